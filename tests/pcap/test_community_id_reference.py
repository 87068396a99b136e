"""The tests' Community ID reference agrees with the spec's published examples."""

from pcapcheck import community_id


def test_community_id_reference_matches_published_tcp_example():
    assert "1:LQU9qZlK+B5F3KDmev6m5PMibrg=" == community_id("128.232.110.120", 34855, "66.35.250.204", 80)


def test_community_id_reference_is_the_same_in_both_directions():
    assert community_id("128.232.110.120", 34855, "66.35.250.204", 80) == community_id(
        "66.35.250.204", 80, "128.232.110.120", 34855
    )
