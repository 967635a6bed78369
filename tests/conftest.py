import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import em_tutorial.models as M
from em_tutorial.models import tiny_model

# tests that need the real offline model: `from conftest import needs_smollm2`
needs_smollm2 = pytest.mark.skipif(not (M._smollm2_gguf() is not None
                                        or M._complete(M.cache_dir()/M.SMOLLM2_NAME)),
                                   reason=f"offline SmolLM2 not installed ({M.SMOLLM2_INSTALL})")


@pytest.fixture(scope="module")
def tiny():
    "The tiny random Llama (mechanics only), one per test module; a module may define its own."
    return tiny_model("llama", seed=0)
