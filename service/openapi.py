"""placeholder"""
def document():
    return {}
