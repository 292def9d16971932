"""Framework handlers: load / predict / unload per model artifact, codecs and the user-script contract."""
