def leaderboard() -> None:
    """(being written)"""
    raise NotImplementedError
