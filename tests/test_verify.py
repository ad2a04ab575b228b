"""Verifiers of sampled solutions: final answers by the matcher, code by running it in the sandbox."""
from evaluation.sandbox import Limits
from evaluation.verify import solution_code, verify_answer, verify_code

FAST = Limits(wall_seconds=4, cpu_seconds=2, memory_mb=512)


def test_a_math_solution_is_judged_by_its_final_answer():
    assert verify_answer("42", "6 * 7 = 42.\n#### 42").passed
    assert verify_answer("1/2", "So the probability is \\boxed{\\frac{1}{2}}").passed
    wrong = verify_answer("42", "6 * 7 = 41.\n#### 41")
    assert not wrong.passed and "41" in wrong.reason


SUM = "Read two numbers and print their sum:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"


def test_code_passes_its_input_output_tests_or_names_the_first_that_fails():
    tests = [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4", "output": "6"}]
    assert verify_code(SUM, tests, limits=FAST).passed
    wrong = verify_code(SUM.replace("a + b", "a - b"), tests, limits=FAST)
    assert not wrong.passed and wrong.reason.startswith("test 1: printed '-1'")
    loops = verify_code("```python\nwhile True: pass\n```", tests, limits=FAST)
    assert not loops.passed and loops.reason.startswith("test 1: timeout")


def test_code_passes_its_asserts_and_must_define_the_entry_point():
    solution = "Here it is.\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    asserts = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
    assert solution_code(solution) == "def add(a, b):\n    return a + b"
    assert verify_code(solution, asserts, entry_point="add", limits=FAST).passed
    off = verify_code(solution.replace("a + b", "a + b + 1"), asserts, entry_point="add", limits=FAST)
    assert not off.passed and off.reason.startswith("error: AssertionError")
    other = verify_code(solution.replace("def add", "def plus"), asserts, entry_point="add", limits=FAST)
    assert not other.passed and "NameError" in other.reason
    hostile = verify_code("```python\nimport os\nos.system('true')\ndef add(a, b): return a + b\n```", asserts,
                          entry_point="add", limits=FAST)
    assert not hostile.passed and hostile.reason.startswith("blocked")
    assert not verify_code("", asserts, limits=FAST).passed
