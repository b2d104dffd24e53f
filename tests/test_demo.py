"""The main job (examples/msa_demo.py) passes on whatever device this run has."""
import importlib.util

from _pkg import HAS_CUDA, ROOT


def test_demo_every_stage_matches_reference():
    spec = importlib.util.spec_from_file_location("msa_demo", ROOT / "examples" / "msa_demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main("cuda" if HAS_CUDA else "cpu") == 0
