"""The picture the call gets: where its camera looks (framing), what lies behind the person (background), and the
one drawing of both at the call's size from the portrait's own pixels (picture)."""
