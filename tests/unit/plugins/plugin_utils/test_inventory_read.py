# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os

from ansible_collections.netpol.fleet.plugins.plugin_utils import inventory_read

READING = ({"web": {"netpol_labels": {"app": "web"}}}, {"netpol_labels": "inventory.yml:3"}, {"web": {}})


def test_a_reading_is_taken_once_and_then_is_gone(tmp_path):
    token = inventory_read.keep(str(tmp_path), READING, ["web"], ["web", "db"])
    assert inventory_read.take(str(tmp_path), token, ["web"], ["web", "db"]) == READING
    assert inventory_read.take(str(tmp_path), token, ["web"], ["web", "db"]) is None  # a second task reads itself
    assert os.listdir(tmp_path / inventory_read.STORE) == []


def test_a_reading_for_another_batch_or_inventory_is_not_taken_and_is_removed(tmp_path):
    for batch, hosts in ((["db"], ["web", "db"]), (["web"], ["web", "db", "new"])):
        token = inventory_read.keep(str(tmp_path), READING, ["web"], ["web", "db"])
        assert inventory_read.take(str(tmp_path), token, batch, hosts) is None
        assert os.listdir(tmp_path / inventory_read.STORE) == []


def test_no_token_or_one_that_names_no_reading_reads_nothing(tmp_path):
    inventory_read.keep(str(tmp_path), READING, ["web"], ["web"])
    for token in (None, "", "../../etc/passwd", "0" * 32):
        assert inventory_read.take(str(tmp_path), token, ["web"], ["web"]) is None
    assert len(os.listdir(tmp_path / inventory_read.STORE)) == 1  # only its own token takes a reading


def test_each_reading_has_a_token_of_its_own_in_a_private_directory(tmp_path):
    tokens = {inventory_read.keep(str(tmp_path), READING, ["web"], ["web"]) for keeping in range(3)}
    assert len(tokens) == 3
    assert os.stat(tmp_path / inventory_read.STORE).st_mode & 0o777 == 0o700


def test_a_reading_that_cannot_be_kept_is_not_kept(tmp_path):
    assert inventory_read.keep(str(tmp_path), ({"web": {"netpol_labels": lambda: None}}, {}, {}), ["web"], ["web"]) is None
    assert os.listdir(tmp_path / inventory_read.STORE) == []
