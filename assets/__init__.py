"""Data the app ships: portraits (public-domain paintings) and trained models; installed as avatar_app.assets."""
