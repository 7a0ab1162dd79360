"""The benchmark harness (`make bench`), and the independent checks of the marts it shares with
the tests (the floor, the comparison of two builds' marts); see README.md."""
