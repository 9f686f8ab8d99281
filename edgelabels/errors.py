"""The one exception users can fix: the CLI prints it as one line and exits with code 2."""


class UserError(Exception):
    """Bad input, config or environment that the user can correct. Message names the file and the problem."""


class ImageProblem(UserError):
    """An image that cannot be used, with the path (or request name) it came from."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
