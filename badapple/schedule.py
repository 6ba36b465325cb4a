"""Scheduling: which frames a run solves together, batch after batch."""


def solve_order(todo: list[int], chunk_size: int, *, warm: bool) -> list[list[int]]:
    """The frames to solve together, batch after batch.

    Without warm starts: consecutive chunks of `todo`. With them, a frame should start from its
    predecessor's solution, so `todo` is cut into `chunk_size` runs of consecutive frames and
    batch k holds the k-th frame of every run: frames from distant parts of the video, each
    following its own predecessor, which the batch before solved.
    """
    if not warm:
        return [todo[first : first + chunk_size] for first in range(0, len(todo), chunk_size)]
    run_length = -(-len(todo) // chunk_size) if todo else 0  # ceil
    runs = [todo[first : first + run_length] for first in range(0, len(todo), run_length or 1)]
    return [[run[k] for run in runs if k < len(run)] for k in range(run_length)]
