def run() -> None:
    """(being written)"""
    raise NotImplementedError
