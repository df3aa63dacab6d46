# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credentials found as kubernetes.core finds them, and the source named."""

from __future__ import annotations

import pytest
import yaml
from kubernetes.config import incluster_config

from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.auth import AuthError, auth_options, connect

# What AWX's Kubernetes bearer-token credential injects.
AWX_ENV = {"K8S_AUTH_HOST": "https://10.0.0.1:6443/", "K8S_AUTH_API_KEY": "t0ken",
           "K8S_AUTH_VERIFY_SSL": "True", "K8S_AUTH_SSL_CA_CERT": "/tmp/awx-ca.pem"}


def kubeconfig(tmp_path, name="config", server="https://192.0.2.1:6443", token="from-file", context="lab"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}},
                     {"name": "other", "context": {"cluster": "c", "user": "u", "namespace": "x"}}],
    }))
    return str(path)


@pytest.fixture(autouse=True)
def not_in_a_pod(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_options_fall_back_to_the_k8s_auth_variables_and_are_typed():
    options = auth_options({"host": "https://given:6443"}, dict(AWX_ENV, K8S_AUTH_IMPERSONATE_GROUPS="a, b"))
    assert options == {"host": "https://given:6443", "api_key": "t0ken", "validate_certs": True,
                       "ca_cert": "/tmp/awx-ca.pem", "impersonate_groups": ["a", "b"]}


def test_a_non_boolean_verify_ssl_is_refused():
    with pytest.raises(AuthError, match=r"validate_certs \(or K8S_AUTH_VERIFY_SSL\) must be a boolean"):
        auth_options({}, {"K8S_AUTH_VERIFY_SSL": "maybe"})


def test_the_awx_credential_alone_authenticates_with_its_token():
    connection = connect({}, AWX_ENV)
    configuration = connection.client.configuration
    assert connection.source == "options (host https://10.0.0.1:6443/, api_key; or their K8S_AUTH_* variables)"
    assert configuration.host == "https://10.0.0.1:6443"
    assert configuration.api_key == {"authorization": "Bearer t0ken"}
    assert (configuration.verify_ssl, configuration.ssl_ca_cert) == (True, "/tmp/awx-ca.pem")


def test_a_named_kubeconfig_and_context_are_used_and_options_override_them(tmp_path):
    path = kubeconfig(tmp_path)
    connection = connect({"kubeconfig": path, "context": "other", "host": "https://override:6443"}, {})
    assert connection.source == "kubeconfig %s (context other)" % path
    assert connection.client.configuration.host == "https://override:6443"
    assert connection.client.configuration.api_key == {"authorization": "Bearer from-file"}


def test_k8s_auth_kubeconfig_names_the_file(tmp_path):
    path = kubeconfig(tmp_path)
    assert connect({}, {"K8S_AUTH_KUBECONFIG": path}).source == "kubeconfig %s" % path


def test_in_cluster_comes_before_the_default_kubeconfig(monkeypatch, tmp_path):
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_text("unused")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    connection = connect({}, {"KUBECONFIG": kubeconfig(tmp_path)})
    assert connection.source == "in-cluster service account"
    assert connection.host == "https://10.96.0.1:443"


def test_the_default_kubeconfig_comes_last(tmp_path):
    path = kubeconfig(tmp_path, server="https://default:6443")
    connection = connect({}, {"KUBECONFIG": path})
    assert (connection.source, connection.host) == ("default kubeconfig %s" % path, "https://default:6443")


def test_no_credentials_at_all_says_what_to_set(tmp_path):
    with pytest.raises(AuthError, match="no Kubernetes credentials: set host with api_key"):
        connect({}, {"KUBECONFIG": str(tmp_path / "absent")})


def test_a_missing_context_is_named(tmp_path):
    with pytest.raises(AuthError, match="context nope"):
        connect({"kubeconfig": kubeconfig(tmp_path), "context": "nope"}, {})


def test_impersonation_becomes_the_api_headers_one_per_group():
    connection = connect({"impersonate_user": "alice", "impersonate_groups": ["ops", "sre"]}, AWX_ENV)
    headers = connection.client.default_headers
    assert headers["Impersonate-User"] == "alice"
    assert [v for k, v in headers.items() if k == "Impersonate-Group"] == []  # each name is a key of its own
    assert sorted(v for k, v in headers.items() if str(k) == "Impersonate-Group") == ["ops", "sre"]


def test_the_groups_reach_the_wire_as_one_header_each():
    """What urllib3 puts on the wire: the client's headers as they leave call_api."""
    connection = connect({"impersonate_user": "alice", "impersonate_groups": ["ops", "sre"]}, AWX_ENV)
    sent = []

    def request(method, url, **kwargs):
        sent.extend(kwargs["headers"].items())
        raise RuntimeError("stop here")

    connection.client.rest_client.pool_manager.request = request
    with pytest.raises(RuntimeError):
        connection.client.call_api("/api/v1/pods", "GET", auth_settings=["BearerToken"], _preload_content=False)
    assert [(str(k), v) for k, v in sent if str(k).startswith("Impersonate")] == [
        ("Impersonate-User", "alice"), ("Impersonate-Group", "ops"), ("Impersonate-Group", "sre")]


def test_the_groups_variable_is_split_at_commas():
    connection = connect({"impersonate_user": "alice"}, dict(AWX_ENV, K8S_AUTH_IMPERSONATE_GROUPS="ops,sre"))
    assert sorted(v for k, v in connection.client.default_headers.items() if str(k) == "Impersonate-Group") == [
        "ops", "sre"]


def test_groups_without_a_user_are_refused():
    with pytest.raises(AuthError, match="impersonate_groups ops, sre needs impersonate_user"):
        connect({"impersonate_groups": ["ops", "sre"]}, AWX_ENV)


def test_groups_that_are_no_list_of_names_are_refused():
    with pytest.raises(AuthError, match="impersonate_groups must be a list of group names"):
        connect({"impersonate_user": "alice", "impersonate_groups": ["ops", ""]}, AWX_ENV)
