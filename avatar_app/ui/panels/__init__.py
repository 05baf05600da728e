"""The window's panels: each binds a group of controls to the app settings and the live pipeline."""
