"""Built-in charging applications (Gy/Ro, Rf, Sy) and their account stores.

See README.md in this folder for the applications, their config keys, the demo account set
and the guide to writing your own application.
"""
