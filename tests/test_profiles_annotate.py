"""Annotation on real platemaps and metadata (../shared/fixtures): the three
control conventions, columns that differ only in case (the LINCS plate has
two spellings of the platemap name), unmatched wells kept and counted, and
tables that would give a well two annotations refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.support.settings import section
from tests.test_profiles_normalize import LINCS_PLATE
from workflow_scripts.errors import InputError
from workflow_scripts.fetch.platemap import platemap_wells, read_text_table
from workflow_scripts.profiles.annotate import KEYS, NamedTable, annotate_profiles
from workflow_scripts.wells import ROWS

ALL_WELLS = [f"{row}{column:02d}" for row in ROWS for column in range(1, 25)]
TARGET = "jump-labels/JUMP-Target/JUMP-Target-1_compound"
MOA = "jump-labels/JUMP-MOA/JUMP-MOA_compound"
JUMP = "jump-metadata/metadata"


def well_keys(plate: str, wells: list[str], source: str = "source_4", batch: str = "batch_1") -> pd.DataFrame:
    """A plate's well profiles as the dino and cellprofiler stages key them, with one feature."""
    return pd.DataFrame(
        {"Metadata_Source": source, "Metadata_Batch": batch, "Metadata_Plate": plate, "Metadata_Well": wells, "f": 1.0}
    )


def table(fixtures: Path, relative: str) -> NamedTable:
    return NamedTable(relative, read_text_table(fixtures / relative, relative))


def platemap(fixtures: Path, relative: str) -> NamedTable:
    return NamedTable(relative, platemap_wells(read_text_table(fixtures / relative, relative), relative))


def annotate(wells, platemap_table, extra=(), controls_table=None, plate="P1", **settings):
    return annotate_profiles(
        wells, platemap_table, list(extra), controls_table, section("annotation", **settings), plate
    )


def test_jump_target_control_type_convention(shared_fixtures):
    layout = read_text_table(shared_fixtures / f"{TARGET}_platemap.tsv", "layout")
    meta = read_text_table(shared_fixtures / f"{TARGET}_metadata.tsv", "meta")
    result = annotate(
        well_keys("BR00116991", ALL_WELLS),
        platemap(shared_fixtures, f"{TARGET}_platemap.tsv"),
        [table(shared_fixtures, f"{TARGET}_metadata.tsv")],
        plate="BR00116991",
    )
    out = result.table.set_index("Metadata_Well")

    dmso = set(layout.loc[layout["broad_sample"].isna(), "well_position"])
    poscon_samples = set(meta.loc[meta["control_type"].str.startswith("poscon").fillna(False), "broad_sample"])
    poscon = set(layout.loc[layout["broad_sample"].isin(poscon_samples), "well_position"])
    assert len(dmso) > 0 and len(poscon) > 0
    assert set(out.index[out["Metadata_PertType"] == "negcon"]) == dmso
    assert set(out.index[out["Metadata_PertType"] == "poscon"]) == poscon
    assert (out["Metadata_PertType"] == "trt").sum() == 384 - len(dmso) - len(poscon)
    assert set(out.loc[sorted(dmso), "Metadata_Perturbation"]) == {"DMSO"}  # broad_sample empty: pert_iname
    trt = out[out["Metadata_PertType"] == "trt"]
    assert (trt["Metadata_Perturbation"] == trt["Metadata_broad_sample"]).all()
    assert result.report["controls_by_convention"]["pert_type"]["negcon"] == len(dmso)
    assert result.report["unmatched_wells"] == {f"{TARGET}_platemap.tsv": 0, f"{TARGET}_metadata.tsv": 0}
    annotation = [c for c in result.table.columns if c.startswith("Metadata_") and c not in KEYS]
    assert all(result.table[c].dtype == "string" for c in annotation)
    assert list(result.table.columns[:4]) == list(KEYS) and result.table.columns[-1] == "f"


def test_jump_moa_gives_moa(shared_fixtures):
    meta = read_text_table(shared_fixtures / f"{MOA}_metadata.tsv", "meta").set_index("broad_sample")
    result = annotate(
        well_keys("P1", ALL_WELLS),
        platemap(shared_fixtures, f"{MOA}_platemap.tsv"),
        [table(shared_fixtures, f"{MOA}_metadata.tsv")],
    )
    out = result.table
    assert "Metadata_MoA" in out.columns and not any(
        c.lower() == "metadata_moa" for c in out.columns if c != "Metadata_MoA"
    )
    trt = out[out["Metadata_PertType"] == "trt"]
    assert (trt["Metadata_MoA"].to_numpy() == meta.loc[trt["Metadata_broad_sample"], "moa"].to_numpy()).all()
    assert (out["Metadata_PertType"] == "negcon").sum() == out["Metadata_broad_sample"].isna().sum() > 0


def test_orf_plate_by_jump_tables_and_controls_table(shared_fixtures):
    """BR00117035 annotated as JUMP does: well.csv.gz, then orf.csv.gz, controls from perturbation_control.csv."""
    wells_only = NamedTable("wells only", pd.DataFrame({"Metadata_Well": pd.array(ALL_WELLS, dtype="string")}))
    well_table, orf = f"{JUMP}/well.2022-12-22_81fd6c6.csv.gz", f"{JUMP}/orf.csv.gz"
    result = annotate(
        well_keys("BR00117035", ALL_WELLS, batch="2021_04_26_Batch1"),
        wells_only,
        [table(shared_fixtures, well_table), table(shared_fixtures, orf)],
        table(shared_fixtures, f"{JUMP}/perturbation_control.csv"),
        plate="BR00117035",
    )
    out = result.table
    assert out["Metadata_PertType"].value_counts(dropna=False).to_dict() == {
        "trt": 342,
        "negcon": 16,
        "poscon": 8,
        pd.NA: 18,
    }
    assert set(out.loc[out["Metadata_PertType"].isna(), "Metadata_JCP2022"]) == {"JCP2022_999999"}  # JUMP's empty wells
    assert out["Metadata_Perturbation"].equals(out["Metadata_JCP2022"])
    marks = result.report["controls_by_convention"]
    assert marks["controls_table"] == {"negcon": 16, "poscon": 8, "other": 18} and marks["pert_type"] == {
        "negcon": 16,
        "poscon": 8,
    }
    assert result.report["unmatched_wells"] == {"wells only": 0, well_table: 0, orf: 18}
    assert result.report["pert_types"] == {"trt": 342, "none": 18, "negcon": 16, "poscon": 8}


def test_config_rule_on_the_218360_platemap(shared_fixtures):
    layout = read_text_table(shared_fixtures / "profiles/plate-218360/cell_counts.tsv", "cell_counts.tsv")
    mapped = NamedTable(
        "218360 map", platemap_wells(layout.drop(columns=["Metadata_Plate", "Metadata_Well", "cell_count"]), "map")
    )
    rule = {"column": "treatment", "negcon": ["0.1% DMSO"], "poscon": ["210 nM bortezomib"]}
    result = annotate(
        well_keys("218360", list(layout["well_position"])),
        mapped,
        plate="218360",
        perturbation_columns=["Metadata_treatment"],
        controls=rule,
    )
    assert result.table["Metadata_PertType"].value_counts().to_dict() == {"negcon": 15, "poscon": 15, "trt": 30}
    assert result.report["controls_by_convention"] == {"config_rule": {"negcon": 15, "poscon": 15}}
    with pytest.raises(InputError, match="plate 218360: annotation.controls.column 'dose' is not in the annotation"):
        annotate(
            well_keys("218360", list(layout["well_position"])), mapped, plate="218360", controls={"column": "dose"}
        )


def lincs_annotation(fixtures: Path) -> tuple[pd.DataFrame, NamedTable]:
    """The LINCS plate's wells, and its metadata as a platemap (two spellings of the platemap name)."""
    lincs = read_text_table(fixtures / LINCS_PLATE, "lincs")
    metadata = lincs[[c for c in lincs.columns if c.startswith("Metadata_")]]
    return well_keys("SQ00015054", list(lincs["Metadata_Well"]), batch="2016_04_01"), NamedTable("lincs", metadata)


def test_lincs_columns_differing_in_case_become_one(shared_fixtures):
    wells, metadata = lincs_annotation(shared_fixtures)
    assert {"Metadata_plate_map_name", "Metadata_Plate_Map_Name"} <= set(metadata.table.columns)
    result = annotate(wells, metadata, plate="SQ00015054")
    names = [c.lower() for c in result.table.columns]
    assert len(names) == len(set(names))
    assert "Metadata_plate_map_name" in result.table.columns and "Metadata_Plate_Map_Name" not in result.table.columns
    assert {"Metadata_MoA", "Metadata_Target"} <= set(result.table.columns)  # from Metadata_moa, Metadata_target
    # pert_type "control" without a control_type: neither treatment nor a control of known kind
    assert result.table["Metadata_PertType"].value_counts(dropna=False).to_dict() == {"trt": 360, pd.NA: 24}
    with_rule = annotate(
        wells, metadata, plate="SQ00015054", controls={"column": "Metadata_broad_sample", "negcon": ["DMSO"]}
    )
    assert with_rule.table["Metadata_PertType"].value_counts().to_dict() == {"trt": 360, "negcon": 24}

    clashing = metadata.table.assign(Metadata_Plate_Map_Name="another map")
    with pytest.raises(InputError, match="'Metadata_plate_map_name' and 'Metadata_Plate_Map_Name' differ only in case"):
        annotate(wells, NamedTable("lincs", clashing), plate="SQ00015054")


def test_unmatched_wells_are_kept_counted_and_never_take_the_dmso_row(shared_fixtures):
    mapped = platemap(shared_fixtures, f"{TARGET}_platemap.tsv")
    missing = ["A02", "A05", "P24"]  # A02 holds DMSO on this platemap
    partial = NamedTable(
        "partial map", mapped.table[~mapped.table["Metadata_Well"].isin(missing)].reset_index(drop=True)
    )
    result = annotate(well_keys("P1", ALL_WELLS), partial, [table(shared_fixtures, f"{TARGET}_metadata.tsv")])
    out = result.table.set_index("Metadata_Well")
    assert len(out) == 384 and result.report["unmatched_wells"]["partial map"] == 3
    assert (
        out.loc[missing, ["Metadata_broad_sample", "Metadata_pert_iname", "Metadata_Perturbation", "Metadata_PertType"]]
        .isna()
        .all()
        .all()
    )
    assert out.loc["A09", "Metadata_PertType"] == "negcon"  # a DMSO well the platemap lists


def test_table_giving_a_well_two_annotations_is_refused(shared_fixtures):
    meta = table(shared_fixtures, f"{TARGET}_metadata.tsv")
    doubled = pd.concat([meta.table, meta.table.iloc[[0]].assign(pert_iname="other name")])
    with pytest.raises(
        InputError, match="plate P1: doubled.tsv gives 1 key.*Metadata_broad_sample='BRD-A86665761-001-01-1'"
    ):
        annotate(
            well_keys("P1", ALL_WELLS),
            platemap(shared_fixtures, f"{TARGET}_platemap.tsv"),
            [NamedTable("doubled.tsv", doubled)],
        )
    same_twice = pd.concat([meta.table, meta.table.iloc[[0]]])  # identical rows are one row
    result = annotate(
        well_keys("P1", ALL_WELLS), platemap(shared_fixtures, f"{TARGET}_platemap.tsv"), [NamedTable("t", same_twice)]
    )
    assert len(result.table) == 384


def test_conventions_that_disagree_are_refused(shared_fixtures):
    with pytest.raises(
        InputError, match="plate P1: well.* negative controls by one convention and positive by another"
    ):
        annotate(
            well_keys("P1", ALL_WELLS),
            platemap(shared_fixtures, f"{TARGET}_platemap.tsv"),
            [table(shared_fixtures, f"{TARGET}_metadata.tsv")],
            controls={"column": "solvent", "poscon": ["DMSO"]},
        )


def test_profiles_listing_a_well_twice_are_refused(shared_fixtures):
    with pytest.raises(InputError, match="plate P1: the well profiles list well.*A01 twice"):
        annotate(well_keys("P1", ["A01", "A02", "A01"]), platemap(shared_fixtures, f"{MOA}_platemap.tsv"))
