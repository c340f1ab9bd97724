"""placeholder"""


class InferenceMixin:
    pass
