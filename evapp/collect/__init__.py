"""``evapp collect``: guided, labelled capture of a user's own gestures (protocol, session, headless runner)."""
