"""Glossary: every symbol and term of the app in plain words."""
from ui.nav import entry
from ui.views.glossary import render

entry(render)
