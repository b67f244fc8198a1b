"""The chart's documentation stays complete: ci/ holds exactly the cases the tests render (the
three modes and every-option)."""

from chart_checks import CI_VALUES, MODES


def test_ci_holds_the_cases_the_tests_render() -> None:
    """chart-testing installs every ci/*-values.yaml; the tests render each of them."""
    assert sorted(p.name for p in CI_VALUES.iterdir()) == sorted(
        [*(f"{mode}-values.yaml" for mode in MODES), "every-option-values.yaml"]
    )
