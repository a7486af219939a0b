"""Issue 27: a rebuild does exactly the work that changed — the code digest follows what a class uses."""

from engine_factory.modelcode import code_fingerprint, search_path


def _pkg(root):
    pkg = root / "zoopkg"
    (pkg / "layers").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "layers" / "__init__.py").write_text("")
    (pkg / "layers" / "conv.py").write_text("def block():\n    return 1\n")
    (pkg / "common.py").write_text("K = 2\n")
    (pkg / "unet.py").write_text(
        "import torch\nfrom .layers.conv import block\nfrom zoopkg import common\n\nclass UNet:\n    pass\n"
    )
    (pkg / "mlp.py").write_text("from . import common\n\nclass MLP:\n    def forward(self):\n        return 1\n")
    (pkg / "other.py").write_text("X = 1\n")  # imported by no one
    return pkg


def _digest(root, ref):
    return code_fingerprint(ref, search_path([root]), model="m")


def test_editing_one_module_rebuilds_only_the_classes_that_use_it(tmp_path):
    pkg = _pkg(tmp_path)
    unet, mlp = _digest(tmp_path, "zoopkg.unet:UNet"), _digest(tmp_path, "zoopkg.mlp:MLP")
    # unet.py, layers/conv.py, layers/__init__.py, common.py, __init__.py
    assert unet["files"] == 5 and mlp["files"] == 3, (unet, mlp)
    (pkg / "mlp.py").write_text((pkg / "mlp.py").read_text().replace("return 1", "return 2"))
    assert _digest(tmp_path, "zoopkg.unet:UNet") == unet  # the sibling in another module: unchanged
    assert _digest(tmp_path, "zoopkg.mlp:MLP")["sha256"] != mlp["sha256"]
    (pkg / "other.py").write_text("X = 2\n")  # a module nobody imports changes nothing
    assert _digest(tmp_path, "zoopkg.unet:UNet") == unet
    (pkg / "layers" / "conv.py").write_text("def block():\n    return 3\n")  # imported (relative, two levels)
    assert _digest(tmp_path, "zoopkg.unet:UNet")["sha256"] != unet["sha256"]


def test_a_shared_module_changes_every_class_that_imports_it(tmp_path):
    pkg = _pkg(tmp_path)
    unet, mlp = _digest(tmp_path, "zoopkg.unet:UNet"), _digest(tmp_path, "zoopkg.mlp:MLP")
    (pkg / "common.py").write_text("K = 3\n")
    assert _digest(tmp_path, "zoopkg.unet:UNet")["sha256"] != unet["sha256"]
    assert _digest(tmp_path, "zoopkg.mlp:MLP")["sha256"] != mlp["sha256"]


def test_a_module_outside_any_package_follows_its_neighbours(tmp_path):
    (tmp_path / "nets.py").write_text("import helper\nimport numpy\n\nclass Net:\n    pass\n")
    (tmp_path / "helper.py").write_text("A = 1\n")
    (tmp_path / "unrelated.py").write_text("B = 1\n")
    first = _digest(tmp_path, "nets:Net")
    assert first["files"] == 2
    (tmp_path / "unrelated.py").write_text("B = 2\n")
    assert _digest(tmp_path, "nets:Net") == first
    (tmp_path / "helper.py").write_text("A = 2\n")
    assert _digest(tmp_path, "nets:Net")["sha256"] != first["sha256"]
