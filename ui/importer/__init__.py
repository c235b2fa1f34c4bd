"""The import screen: a character card file becomes a new agent. (``import`` is a keyword,
hence the folder's name.)"""
