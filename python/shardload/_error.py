"""shardload.Error: every failure the library reports (docs/errors.md), also
named SafetensorError (safetensors' name), and its subclasses that are also
the matching Python built-in exceptions, so that code written for either
catches them: FileNotFound (also FileNotFoundError), OSFailure (OSError),
TensorMissing (KeyError), BadArgument (ValueError), BadIndex (IndexError),
BadIndexType (TypeError)."""
import errno as _errno


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
        self.code_number = code_number or _RAISED_HERE.get(code, 0)
        self.path = path
        self.tensor = tensor
        self.detail = detail
        self.errno = errno

    def __reduce__(self):
        # Keeps the attributes through pickling (multiprocessing, torchrun).
        return (type(self), (str(self),), self.__dict__)

    def __str__(self):
        return Exception.__str__(self)  # KeyError's quoting and OSError's format stay out


SafetensorError = Error
# The numbers of the codes the Python package raises itself (docs/errors.md).
_RAISED_HERE = {"invalid_argument": 300, "tensor_not_found": 301}


class FileNotFound(Error, FileNotFoundError):
    """A file that does not exist (code "io_error" with ENOENT or ENOTDIR, or
    "shard_missing")."""


class OSFailure(Error, OSError):
    """Another failed system call (code "io_error", errno set)."""


class TensorMissing(Error, KeyError):
    """A tensor name the file does not hold (code "tensor_not_found")."""


class BadArgument(Error, ValueError):
    """A value safetensors' API refuses with SafetensorError where Python
    code expects ValueError: a safe_open used after its `with` block, an
    unknown backend, framework or device."""


class BadIndex(Error, IndexError):
    """A get_slice index out of its tensor's bounds."""


class BadIndexType(Error, TypeError):
    """A get_slice index of a kind safetensors does not take (a non-empty
    list)."""


def error_class(code, errno):
    """The class of an Error with CODE (name) and ERRNO."""
    if code == "shard_missing" or (code == "io_error" and errno in (_errno.ENOENT,
                                                                    _errno.ENOTDIR)):
        return FileNotFound
    if code == "io_error":
        return OSFailure
    if code == "tensor_not_found":
        return TensorMissing
    return Error
