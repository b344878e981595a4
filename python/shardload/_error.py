"""shardload.Error: every failure the library reports (docs/errors.md)."""


class Error(Exception):
    """A checkpoint, plan or I/O problem reported by shardload.

    Attributes:
      code: the stable code name, e.g. "shard_missing", "invalid_header_length",
        "io_error", "tp_indivisible" (docs/errors.md).
      code_number: the same code as a number (204, 102, 302, 404, ...), as
        `shardload ... --json` reports it.
      path: the file the error is about ("" when none).
      tensor: the tensor it is about ("" when none).
      detail: the rule broken, in words.
      errno: the system error number for "io_error" (else 0).

    str(error) is "PATH: tensor `NAME`: DETAIL (error: CODE)", as the CLI
    prints it. Bad arguments (wrong types, rank >= world, ...) raise
    TypeError / ValueError instead.
    """

    def __init__(self, message, code="", code_number=0, path="", tensor="", detail="",
                 errno=0):
        super().__init__(message)
        self.code = code
        self.code_number = code_number
        self.path = path
        self.tensor = tensor
        self.detail = detail
        self.errno = errno

    def __reduce__(self):
        # Keeps the attributes through pickling (multiprocessing, torchrun).
        return (type(self), (str(self),), self.__dict__)
