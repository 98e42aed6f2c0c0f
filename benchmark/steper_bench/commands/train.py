def train() -> None:
    """(being written)"""
    raise NotImplementedError
