# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connect to the Kubernetes API the way kubernetes.core does (controller side only).

The same option names and K8S_AUTH_* environment fallbacks as kubernetes.core's k8s modules
(AWX's Kubernetes credential injects K8S_AUTH_HOST, K8S_AUTH_API_KEY, K8S_AUTH_VERIFY_SSL and
K8S_AUTH_SSL_CA_CERT). The order is kubernetes.core's: enough options to authenticate on their
own (host with a token, a client certificate or a username and password); else the kubeconfig
or context named; else the in-cluster service account; else the default kubeconfig. Options
given always override what a kubeconfig says. The source used is returned, to be shown.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

# option -> its environment fallback, as kubernetes.core names them.
AUTH_OPTIONS = {
    "kubeconfig": "K8S_AUTH_KUBECONFIG",
    "context": "K8S_AUTH_CONTEXT",
    "host": "K8S_AUTH_HOST",
    "api_key": "K8S_AUTH_API_KEY",
    "username": "K8S_AUTH_USERNAME",
    "password": "K8S_AUTH_PASSWORD",
    "client_cert": "K8S_AUTH_CERT_FILE",
    "client_key": "K8S_AUTH_KEY_FILE",
    "ca_cert": "K8S_AUTH_SSL_CA_CERT",
    "validate_certs": "K8S_AUTH_VERIFY_SSL",
    "proxy": "K8S_AUTH_PROXY",
    "impersonate_user": "K8S_AUTH_IMPERSONATE_USER",
    "impersonate_groups": "K8S_AUTH_IMPERSONATE_GROUPS",
}
# option -> the kubernetes client Configuration attribute it overrides.
CONFIGURATION_ATTRIBUTES = {
    "host": "host",
    "client_cert": "cert_file",
    "client_key": "key_file",
    "ca_cert": "ssl_ca_cert",
    "validate_certs": "verify_ssl",
    "proxy": "proxy",
}
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


class AuthError(Exception):
    """The API cannot be reached with what was configured; the message says what is missing."""


@dataclass(frozen=True)
class Connection:
    """A ready client and, for the run's output, where its credentials came from."""

    client: Any  # kubernetes.client.ApiClient
    source: str
    host: str


def auth_options(given: Mapping[str, Any], environ: Mapping[str, str]) -> Dict[str, Any]:
    """Each option as given, else from its K8S_AUTH_* variable; typed; unset ones left out."""
    found: Dict[str, Any] = {}
    for option, variable in AUTH_OPTIONS.items():
        value = given.get(option)
        if value is None or value == "":
            value = environ.get(variable) or None
        if value is None:
            continue
        if option == "validate_certs":
            value = _boolean(value, option, variable)
        elif option == "impersonate_groups" and isinstance(value, str):
            value = [g.strip() for g in value.split(",") if g.strip()]
        found[option] = value
    return found


def _boolean(value: Any, option: str, variable: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS or text in FALSE_WORDS:
        return text in TRUE_WORDS
    raise AuthError("%s (or %s) must be a boolean, not %r" % (option, variable, value))


def self_sufficient(options: Mapping[str, Any]) -> bool:
    """Options that authenticate without any kubeconfig or service account."""
    if not options.get("host"):
        return False
    return bool(options.get("api_key") or (options.get("username") and options.get("password"))
                or (options.get("client_cert") and options.get("client_key")))


def connect(given: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None) -> Connection:
    """A client for the API and the source of its credentials; AuthError if there is none."""
    from kubernetes import client, config  # controller only; imported when a cluster is used

    environ = os.environ if environ is None else environ
    options = auth_options(given, environ)
    configuration = client.Configuration()
    source = _load_base(options, configuration, config, default_kubeconfig(environ))
    _apply_options(options, configuration)
    api = client.ApiClient(configuration)
    if options.get("username") and options.get("password") and not options.get("api_key"):
        pair = ("%s:%s" % (options["username"], options["password"])).encode()
        api.set_default_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    for name, value in impersonation_headers(options):
        api.set_default_header(name, value)
    return Connection(client=api, source=source, host=configuration.host)


class RepeatedHeader(str):
    """A header name that stays a key of its own in the client's header dict, however many have
    the same text: the client sends one header per key, and the API reads several groups only as
    several Impersonate-Group headers (it never splits one value at commas)."""

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other


def impersonation_headers(options: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """Impersonate-User, then one Impersonate-Group per group, as kubernetes.core sends them."""
    groups = options.get("impersonate_groups") or []
    if isinstance(groups, str) or not all(isinstance(g, str) and g.strip() for g in groups):
        raise AuthError("impersonate_groups must be a list of group names, not %r" % (groups,))
    if groups and not options.get("impersonate_user"):
        raise AuthError("impersonate_groups %s needs impersonate_user: the API impersonates groups only "
                        "together with a user" % ", ".join(groups))
    headers = [("Impersonate-User", str(options["impersonate_user"]))] if options.get("impersonate_user") else []
    return headers + [(RepeatedHeader("Impersonate-Group"), group.strip()) for group in groups]


def default_kubeconfig(environ: Mapping[str, str]) -> str:
    """$KUBECONFIG (its first file), else ~/.kube/config, as kubectl finds it."""
    return os.path.expanduser((environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or "~/.kube/config")


def _load_base(options: Mapping[str, Any], configuration: Any, config: Any, default: str) -> str:
    """Fill configuration from a kubeconfig or the service account; say which."""
    if self_sufficient(options):
        how = "api_key" if options.get("api_key") else "client_cert" if options.get("client_cert") else "username"
        return "options (host %s, %s; or their K8S_AUTH_* variables)" % (options["host"], how)
    if options.get("kubeconfig") or options.get("context"):
        path = os.path.expanduser(options.get("kubeconfig") or default)
        _load_kubeconfig(config, path, options.get("context"), configuration)
        return "kubeconfig %s%s" % (path, _context_note(options))
    try:
        config.load_incluster_config(client_configuration=configuration)
        return "in-cluster service account"
    except config.ConfigException:
        pass
    path = default
    if not os.path.exists(path):
        raise AuthError("no Kubernetes credentials: set host with api_key (or client_cert and client_key), "
                        "or kubeconfig/context, or their K8S_AUTH_* variables; not in a pod, and no default "
                        "kubeconfig at %s" % path)
    _load_kubeconfig(config, path, None, configuration)
    return "default kubeconfig %s" % path


def _context_note(options: Mapping[str, Any]) -> str:
    return " (context %s)" % options["context"] if options.get("context") else ""


def _load_kubeconfig(config: Any, path: str, context: Optional[str], configuration: Any) -> None:
    try:
        config.load_kube_config(config_file=path, context=context, client_configuration=configuration,
                                persist_config=False)
    except (OSError, config.ConfigException) as failure:
        raise AuthError("kubeconfig %s%s: %s" % (path, " context %s" % context if context else "", failure)) from None


def _apply_options(options: Mapping[str, Any], configuration: Any) -> None:
    """Options override the kubeconfig's values, as in kubernetes.core."""
    for option, attribute in CONFIGURATION_ATTRIBUTES.items():
        if option in options:
            value = options[option].rstrip("/") if option == "host" else options[option]
            setattr(configuration, attribute, value)
    if options.get("api_key"):
        configuration.api_key = {"authorization": "Bearer %s" % options["api_key"]}
        configuration.api_key_prefix = {}
