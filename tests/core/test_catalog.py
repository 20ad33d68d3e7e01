"""Tests for bot.catalog: built-in models and operator model files."""

from __future__ import annotations

import json

import pytest

from bot.catalog import (
    BUILTIN_MODELS,
    DOCUMENTED_RATIOS,
    Catalog,
    CatalogError,
    ModelSpec,
    builtin_catalog,
    load_catalog,
)

NINE_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9", "9:21")


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _toml_error(tmp_path, text: str) -> str:
    path = _write(tmp_path, "models.toml", text)
    with pytest.raises(CatalogError) as excinfo:
        load_catalog(path)
    message = str(excinfo.value)
    assert str(path) in message  # every message names the file
    return message


# --- built-ins ----------------------------------------------------------------------------


def test_builtins_match_documented_facts():
    catalog = load_catalog(None)
    assert catalog.ids == (
        "doubao-seedream-4-0",
        "doubao-seedream-4-5",
        "doubao-seedream-5-0",
        "doubao-seedream-5-0-pro",
    )
    assert DOCUMENTED_RATIOS == NINE_RATIOS

    v40 = catalog.get("doubao-seedream-4-0")
    assert v40.display_name == "Seedream 4.0"
    assert v40.ratios == NINE_RATIOS
    assert v40.supports_auto is True
    assert v40.resolutions == ("1K", "2K", "4K") and v40.default_resolution == "2K"
    assert v40.max_prompt_length == 1000
    assert v40.max_reference_images == 10
    assert v40.max_images == 15
    assert (v40.watermark_default, v40.speed_modes) == (True, ("standard", "fast"))

    v45 = catalog.get("doubao-seedream-4-5")
    assert v45.display_name == "Seedream 4.5"
    assert v45.ratios == NINE_RATIOS
    assert v45.supports_auto is False
    assert v45.resolutions == ("2K", "4K") and v45.default_resolution == "2K"
    assert (v45.max_prompt_length, v45.max_reference_images, v45.max_images) == (1000, 10, 15)
    assert (v45.watermark_default, v45.speed_modes) == (True, ("standard", "fast"))

    v50 = catalog.get("doubao-seedream-5-0")
    assert v50.display_name == "Seedream 5.0"
    assert v50.ratios == NINE_RATIOS
    assert v50.supports_auto is False
    assert v50.resolutions == ("2K", "3K") and v50.default_resolution == "2K"
    assert v50.resolution_field == "metadata.resolution"
    assert (v50.max_prompt_length, v50.max_reference_images, v50.max_images) == (1000, 10, 15)
    assert (v50.watermark_default, v50.speed_modes) == (False, ())
    assert (v50.supports_layers, v50.extra_reference_billing) == (False, False)

    pro = catalog.get("doubao-seedream-5-0-pro")
    assert (pro.display_name, pro.ratios, pro.supports_auto) == ("Seedream 5.0 Pro", NINE_RATIOS, False)
    assert pro.resolutions == ("1K", "2K") and pro.default_resolution == "2K"
    assert (pro.max_prompt_length, pro.max_reference_images, pro.max_images) == (1000, 10, 10)
    assert (pro.watermark_default, pro.speed_modes) == (False, ())
    assert (pro.supports_layers, pro.extra_reference_billing) == (True, True)
    assert pro == ModelSpec(
        id="doubao-seedream-5-0-pro",
        display_name="Seedream 5.0 Pro",
        resolutions=("1K", "2K"),
        default_resolution="2K",
        max_images=10,
        supports_layers=True,
        extra_reference_billing=True,
    )


def test_catalog_lookup_and_iteration():
    catalog = builtin_catalog()
    assert len(catalog) == 4
    assert [spec.id for spec in catalog] == list(catalog.ids)
    assert "doubao-seedream-5-0" in catalog
    assert catalog.find("seedream 5.0").id == "doubao-seedream-5-0"
    assert catalog.find("  DOUBAO-SEEDREAM-4-0 ").id == "doubao-seedream-4-0"
    assert catalog.find("Seedream 9") is None
    with pytest.raises(KeyError):
        catalog.get("nope")
    with pytest.raises(KeyError):
        catalog.get("Seedream 5.0")  # get() is by exact id only
    assert catalog.all_resolutions() == ("1K", "2K", "3K", "4K")
    assert catalog.all_ratios() == (*NINE_RATIOS, "auto")
    assert catalog.get("doubao-seedream-4-0").ratio_choices[-1] == "auto"
    assert "auto" not in catalog.get("doubao-seedream-5-0").ratio_choices


def test_request_fields():
    v50 = builtin_catalog().get("doubao-seedream-5-0")
    assert v50.request_fields("3K") == {"metadata": {"resolution": "3K"}}
    assert v50.request_fields(None) == {}
    with pytest.raises(ValueError, match="4K"):
        v50.request_fields("4K")

    flat = ModelSpec(id="m", display_name="M", resolutions=("hd",), resolution_field="quality")
    assert flat.request_fields("hd") == {"quality": "hd"}
    deep = ModelSpec(id="m", display_name="M", resolutions=("hd",), resolution_field="a.b.c")
    assert deep.request_fields("hd") == {"a": {"b": {"c": "hd"}}}


def test_model_spec_validates_itself():
    with pytest.raises(ValueError, match="default_resolution"):
        ModelSpec(id="m", display_name="M", resolutions=("2K",), default_resolution="3K")
    with pytest.raises(ValueError, match="overwrite"):
        ModelSpec(id="m", display_name="M", resolution_field="size")
    with pytest.raises(ValueError, match="supports_auto"):
        ModelSpec(id="m", display_name="M", supports_auto=True, max_reference_images=0)


def test_a_file_describes_watermark_default_and_speed_modes(tmp_path):
    path = _write(
        tmp_path,
        "models.toml",
        """
[models."doubao-seedream-6-0"]
display_name = "Seedream 6.0"
watermark_default = true
speed_modes = ["fast"]

[models."doubao-seedream-4-5"]
speed_modes = []
""",
    )
    catalog = load_catalog(path)
    new, changed = catalog.get("doubao-seedream-6-0"), catalog.get("doubao-seedream-4-5")
    assert (new.watermark_default, new.speed_modes, changed.speed_modes, changed.watermark_default) == (
        True,
        ("fast",),
        (),
        True,
    )


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('watermark_default = "yes"', "watermark_default must be true or false"),
        ('speed_modes = "fast"', "speed_modes must be a list of strings"),
        ('speed_modes = ["turbo"]', 'speed mode "turbo" is not one ToAPIs documents (standard, fast)'),
        ('speed_modes = ["fast", "fast"]', "speed_modes contain duplicates"),
    ],
)
def test_bad_watermark_default_or_speed_modes_are_refused(tmp_path, entry, expected):
    message = _toml_error(tmp_path, f'[models."doubao-seedream-4-0"]\n{entry}\n')
    assert expected in message


# --- adding, overriding, removing ---------------------------------------------------------


def test_toml_adds_a_model(tmp_path):
    path = _write(
        tmp_path,
        "models.toml",
        """
[models."my-model"]
display_name = "My Model"
ratios = ["1:1", "16:9"]
resolutions = ["1K", "4K"]
default_resolution = "4K"
resolution_field = "options.res"
max_prompt_length = 2000
max_reference_images = 4
max_images = 8
""",
    )
    catalog = load_catalog(path)
    assert catalog.ids[-1] == "my-model"
    assert len(catalog) == 5
    spec = catalog.get("my-model")
    assert spec == ModelSpec(
        id="my-model",
        display_name="My Model",
        ratios=("1:1", "16:9"),
        supports_auto=False,
        resolutions=("1K", "4K"),
        default_resolution="4K",
        resolution_field="options.res",
        max_prompt_length=2000,
        max_reference_images=4,
        max_images=8,
    )
    assert spec.request_fields("1K") == {"options": {"res": "1K"}}
    assert catalog.all_resolutions() == ("1K", "2K", "3K", "4K")


def test_new_model_defaults(tmp_path):
    path = _write(tmp_path, "models.toml", '[models.plain]\ndisplay_name = "Plain"\n')
    spec = load_catalog(path).get("plain")
    assert spec.ratios == NINE_RATIOS
    assert spec.supports_auto is False
    assert spec.resolutions == () and spec.default_resolution is None
    assert spec.resolution_field == "metadata.resolution"
    assert (spec.max_prompt_length, spec.max_reference_images, spec.max_images) == (1000, 10, 15)


def test_toml_override_merges_over_builtin(tmp_path):
    path = _write(
        tmp_path,
        "models.toml",
        """
[models."doubao-seedream-4-5"]
resolutions = ["2K", "4K"]
max_prompt_length = 3000
""",
    )
    catalog = load_catalog(path)
    assert catalog.ids == builtin_catalog().ids  # keeps its place
    spec = catalog.get("doubao-seedream-4-5")
    assert spec.resolutions == ("2K", "4K")
    assert spec.max_prompt_length == 3000
    # Untouched keys keep their built-in values.
    assert spec.display_name == "Seedream 4.5"
    assert spec.default_resolution == "2K"
    assert spec.ratios == NINE_RATIOS


def test_override_can_clear_resolutions_with_empty_default(tmp_path):
    path = _write(
        tmp_path,
        "models.toml",
        '[models."doubao-seedream-4-5"]\nresolutions = []\ndefault_resolution = ""\n',
    )
    spec = load_catalog(path).get("doubao-seedream-4-5")
    assert spec.resolutions == () and spec.default_resolution is None
    assert spec.request_fields(None) == {}


def test_json_adds_and_overrides(tmp_path):
    document = {
        "models": {
            "json-model": {"display_name": "JSON Model", "supports_auto": True, "max_reference_images": 2},
            "doubao-seedream-5-0": {"display_name": "Seedream 5.0 Lite"},
        }
    }
    path = _write(tmp_path, "models.json", json.dumps(document))
    catalog = load_catalog(path)
    assert catalog.get("json-model").supports_auto is True
    assert catalog.get("json-model").max_reference_images == 2
    assert catalog.find("seedream 5.0 lite").id == "doubao-seedream-5-0"
    assert catalog.find("Seedream 5.0") is None


def test_a_file_describes_which_models_split_into_layers_and_how_references_are_billed(tmp_path):
    path = _write(
        tmp_path,
        "models.toml",
        '[models."next-pro"]\ndisplay_name = "Next Pro"\nsupports_layers = true\n'
        "extra_reference_billing = true\n"
        '[models."doubao-seedream-5-0-pro"]\nsupports_layers = false\n',
    )
    catalog = load_catalog(path)
    new, pro = catalog.get("next-pro"), catalog.get("doubao-seedream-5-0-pro")
    assert (new.supports_layers, new.extra_reference_billing, pro.supports_layers) == (True, True, False)
    assert _toml_error(tmp_path, '[models."x"]\ndisplay_name = "X"\nsupports_layers = "yes"\n').endswith(
        'model "x": supports_layers must be true or false'
    )


def test_remove_drops_a_builtin(tmp_path):
    path = _write(tmp_path, "models.toml", '[models."doubao-seedream-4-0"]\nremove = true\n')
    catalog = load_catalog(path)
    assert catalog.ids == ("doubao-seedream-4-5", "doubao-seedream-5-0", "doubao-seedream-5-0-pro")
    assert catalog.find("Seedream 4.0") is None
    assert "auto" not in catalog.all_ratios()


def test_remove_false_is_a_plain_override(tmp_path):
    path = _write(tmp_path, "models.toml", '[models."doubao-seedream-4-0"]\nremove = false\nmax_images = 4\n')
    assert load_catalog(path).get("doubao-seedream-4-0").max_images == 4


def test_with_overrides_directly():
    catalog = builtin_catalog().with_overrides({"x": {"display_name": "X"}}, source="env")
    assert catalog.ids[-1] == "x"
    with pytest.raises(CatalogError, match=r'^env: model "y": a new model needs a display_name$'):
        builtin_catalog().with_overrides({"y": {}}, source="env")


def test_builtin_catalog_is_not_mutated_by_overrides(tmp_path):
    path = _write(tmp_path, "models.toml", '[models."doubao-seedream-4-0"]\nremove = true\n')
    load_catalog(path)
    assert len(builtin_catalog()) == 4
    assert BUILTIN_MODELS[0].id == "doubao-seedream-4-0"


# --- malformed files ----------------------------------------------------------------------


def test_example_message_format(tmp_path):
    path = _write(tmp_path, "models.toml", '[models.x]\ndisplay_name = "X"\nratios = "1:1"\n')
    with pytest.raises(CatalogError) as excinfo:
        load_catalog(path)
    assert str(excinfo.value) == f'{path}: model "x": ratios must be a list of strings'


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[models.x]\ndisplay_name = "X"\ncolour = "red"\n', 'model "x": unknown key "colour"'),
        ('[models.x]\ndisplay_name = "X"\nratios = [1, 2]\n', 'model "x": ratios must be a list of strings'),
        ("[models.x]\ndisplay_name = 5\n", 'model "x": display_name must be a string'),
        ('[models.x]\ndisplay_name = ""\n', 'model "x": display_name must be a non-empty string'),
        ('[models.x]\ndisplay_name = "   "\n', 'model "x": display_name must be a non-empty string'),
        ("[models.x]\nmax_images = 2\n", 'model "x": a new model needs a display_name'),
        ('[models.x]\ndisplay_name = "X"\nsupports_auto = "yes"\n', "supports_auto must be true or false"),
        ('[models.x]\ndisplay_name = "X"\nmax_images = "4"\n', 'model "x": max_images must be an integer'),
        ('[models.x]\ndisplay_name = "X"\nmax_images = true\n', 'model "x": max_images must be an integer'),
        ('[models.x]\ndisplay_name = "X"\nmax_images = 4.0\n', 'model "x": max_images must be an integer'),
        (
            '[models.x]\ndisplay_name = "X"\nresolutions = ["1K"]\ndefault_resolution = "2K"\n',
            'model "x": default_resolution "2K" is not one of resolutions ["1K"]',
        ),
        (
            '[models."doubao-seedream-5-0"]\nresolutions = ["3K"]\n',
            'model "doubao-seedream-5-0": default_resolution "2K" is not one of resolutions ["3K"]',
        ),
        (
            '[models.x]\ndisplay_name = "X"\nmax_prompt_length = 0\n',
            'model "x": max_prompt_length must be an integer from 1 to 6000 (got 0)',
        ),
        (
            '[models.x]\ndisplay_name = "X"\nmax_prompt_length = 6001\n',
            "max_prompt_length must be an integer from 1 to 6000 (got 6001)",
        ),
        (
            '[models.x]\ndisplay_name = "X"\nmax_reference_images = 11\n',
            'model "x": max_reference_images must be an integer from 0 to 10 (got 11)',
        ),
        (
            '[models.x]\ndisplay_name = "X"\nmax_reference_images = -1\n',
            "max_reference_images must be an integer from 0 to 10 (got -1)",
        ),
        (
            '[models.x]\ndisplay_name = "X"\nmax_images = 16\n',
            'model "x": max_images must be an integer from 1 to 15 (got 16)',
        ),
        (
            '[models.x]\ndisplay_name = "X"\nmax_images = 0\n',
            "max_images must be an integer from 1 to 15 (got 0)",
        ),
        ('[models.x]\ndisplay_name = "X"\nratios = ["wide"]\n', 'ratio "wide" is not of the form "W:H"'),
        ('[models.x]\ndisplay_name = "X"\nratios = []\n', 'model "x": ratios must not be empty'),
        ('[models.x]\ndisplay_name = "X"\nratios = ["auto"]\n', "set supports_auto = true instead"),
        ('[models.x]\ndisplay_name = "X"\nratios = ["1:1", "1:1"]\n', "ratios contain duplicates"),
        ('[models.x]\ndisplay_name = "X"\nresolution_field = "metadata..res"\n', "must be a dotted path"),
        ('[models.x]\ndisplay_name = "X"\nresolution_field = "prompt"\n', "would overwrite a request field"),
        (
            '[models.x]\ndisplay_name = "X"\nsupports_auto = true\nmax_reference_images = 0\n',
            "supports_auto needs max_reference_images of at least 1",
        ),
        ('[models."bad id!"]\ndisplay_name = "X"\n', "model id 'bad id!' must be"),
        ("[models.x]\nremove = true\n", 'model "x": cannot remove a model that does not exist'),
        ('[models."doubao-seedream-4-0"]\nremove = "yes"\n', "remove must be true or false"),
        (
            '[models."doubao-seedream-4-0"]\nremove = true\nmax_images = 2\n',
            "remove = true cannot be combined with other keys",
        ),
        ("[models]\nx = 5\n", 'model "x": must be a table of settings'),
        ("models = 5\n", '"models" must be a table'),
        ("[other]\na = 1\n", 'unknown top-level key "other"'),
        ("", 'no "models" table'),
        (
            '[models.x]\ndisplay_name = "Seedream 4.0"\n',
            'models "doubao-seedream-4-0" and "x" have the same display name "Seedream 4.0"',
        ),
        (
            '[models.x]\ndisplay_name = "seedream 5.0"\n',
            'have the same display name "seedream 5.0"',
        ),
        (
            '[models.x]\ndisplay_name = "Doubao-Seedream-4-0"\n',
            'clashes with the id of model "doubao-seedream-4-0"',
        ),
    ],
)
def test_malformed_toml(tmp_path, toml, expected):
    message = _toml_error(tmp_path, toml)
    assert expected in message


def test_invalid_toml_reports_line(tmp_path):
    message = _toml_error(tmp_path, '[models.x]\ndisplay_name = "X"\nratios = [1:1]\n')
    assert "invalid TOML" in message
    assert "line 3" in message


def test_invalid_json_reports_line(tmp_path):
    path = _write(tmp_path, "models.json", '{"models": {\n  "x": {"display_name": "X",}\n}}')
    with pytest.raises(CatalogError) as excinfo:
        load_catalog(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: invalid JSON: ")
    assert "line 2" in message


def test_json_duplicate_keys_are_rejected(tmp_path):
    path = _write(tmp_path, "models.json", '{"models": {"x": {"display_name": "X", "display_name": "Y"}}}')
    with pytest.raises(CatalogError, match='duplicate key "display_name"') as excinfo:
        load_catalog(path)
    assert str(path) in str(excinfo.value)


def test_json_top_level_must_be_an_object(tmp_path):
    path = _write(tmp_path, "models.json", "[1, 2]")
    with pytest.raises(CatalogError, match='top-level object with a "models" table') as excinfo:
        load_catalog(path)
    assert str(path) in str(excinfo.value)


def test_json_null_default_resolution_means_none(tmp_path):
    document = {"models": {"doubao-seedream-5-0": {"default_resolution": None}}}
    path = _write(tmp_path, "models.json", json.dumps(document))
    assert load_catalog(path).get("doubao-seedream-5-0").default_resolution is None


def test_json_wrong_type_names_file_and_model(tmp_path):
    document = {"models": {"x": {"display_name": "X", "ratios": "1:1"}}}
    path = _write(tmp_path, "models.json", json.dumps(document))
    with pytest.raises(CatalogError) as excinfo:
        load_catalog(path)
    assert str(excinfo.value) == f'{path}: model "x": ratios must be a list of strings'


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(CatalogError) as excinfo:
        load_catalog(path)
    assert str(excinfo.value) == f"{path}: file not found"


def test_unreadable_file(tmp_path):
    # A directory with a .toml name cannot be read as a file.
    path = tmp_path / "dir.toml"
    path.mkdir()
    with pytest.raises(CatalogError, match="cannot read the file") as excinfo:
        load_catalog(path)
    assert str(path) in str(excinfo.value)


def test_not_utf8(tmp_path):
    path = tmp_path / "models.toml"
    path.write_bytes(b'[models.x]\ndisplay_name = "\xff"\n')
    with pytest.raises(CatalogError, match="not valid UTF-8") as excinfo:
        load_catalog(path)
    assert str(path) in str(excinfo.value)


def test_unsupported_extension(tmp_path):
    path = _write(tmp_path, "models.yaml", "models: {}\n")
    with pytest.raises(CatalogError) as excinfo:
        load_catalog(path)
    assert str(excinfo.value) == f"{path}: model file must end in .toml or .json"


def test_too_many_models(tmp_path):
    tables = "".join(f'[models."m{i}"]\ndisplay_name = "Model {i}"\n' for i in range(22))  # 4 + 22 = 26
    message = _toml_error(tmp_path, tables)
    assert "26 models is more than the 25" in message


def test_exactly_25_models_is_fine(tmp_path):
    tables = "".join(f'[models."m{i}"]\ndisplay_name = "Model {i}"\n' for i in range(21))
    assert len(load_catalog(_write(tmp_path, "models.toml", tables))) == 25


def test_empty_catalog_is_an_error(tmp_path):
    message = _toml_error(
        tmp_path,
        "".join(f'[models."{i}"]\nremove = true\n' for i in builtin_catalog().ids),
    )
    assert "no models" in message


def test_catalog_constructor_rejects_duplicates():
    spec = ModelSpec(id="a", display_name="A")
    with pytest.raises(ValueError, match="listed twice"):
        Catalog([spec, spec])
    with pytest.raises(ValueError, match="no models"):
        Catalog([])
