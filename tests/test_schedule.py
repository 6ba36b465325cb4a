from badapple.schedule import solve_order


def test_solve_order_follows_each_frame_with_its_successor():
    assert solve_order([1, 2, 3, 4, 5], 2, warm=False) == [[1, 2], [3, 4], [5]]
    # runs 1-3 and 4-5: each batch takes the next frame of every run
    assert solve_order([1, 2, 3, 4, 5], 2, warm=True) == [[1, 4], [2, 5], [3]]
    assert solve_order([7], 64, warm=True) == [[7]]
    assert solve_order([], 4, warm=True) == []
