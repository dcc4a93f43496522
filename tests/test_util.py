from util import HUGE_PAGES_TUNABLE, huge_pages_env


def test_huge_pages_are_asked_for_beside_the_users_tunables_and_never_over_their_choice():
    env = {"PATH": "/bin"}
    assert huge_pages_env(env) == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert env == {"PATH": "/bin"}  # a copy
    assert huge_pages_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})["GLIBC_TUNABLES"] == \
        "glibc.malloc.arena_max=2:" + HUGE_PAGES_TUNABLE
    assert huge_pages_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
