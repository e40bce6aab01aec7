# ruff: noqa: E501  (a table of test ids: one entry a line reads best)
"""sozu 2.1's configuration keys and CLI flags (reference sections 4 and 5), and how pysozu
answers each one. `test_sozu_surface.py` walks these tables.

Each entry is one of:
- `Tested("tests/...py::test_name")`: implemented; the named test exercises its behaviour.
- `Warned(value)`: loads with a warning naming the key; the walk writes `key = value` and
  checks `config check`'s loader says so (HTTP/2, ... keys).
- `Unserved(value)`: the key belongs to something pysozu does not serve yet (TCP and UDP
  proxying, active health checks); the walk checks that the table holding it gets the
  "not supported yet" warning.
- CLI only, `Refused(argv)`: running `pysozu <argv>` is a usage error naming the verb or flag,
  or builds a request main answers with a FAILURE ("not supported yet").

Adding a key or flag to sozu's lists without one of these fails the walk.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tested:
    __test__ = False  # not a pytest class
    test: str


@dataclass(frozen=True)
class Warned:
    value: object


@dataclass(frozen=True)
class Unserved:
    value: object


@dataclass(frozen=True)
class Refused:
    argv: tuple[str, ...]


Proof = Tested | Warned | Unserved | Refused

I = "tests/integration/"  # noqa: E741
U = "tests/unit/"
CONFIG_T = U + "test_config.py::"
LIMITS = I + "test_http_limits.py::"
SNI = I + "test_https_sni.py::"
POLICY = I + "test_http_policy.py::"
ROUTER = U + "test_router.py::"
LB = U + "test_load_balancing.py::"
ACCESS = I + "test_observability_access_logs.py::"
CLI_T = U + "test_cli_tree.py::"
VERBS = I + "test_cli_verbs.py::"
CERTS = I + "test_https_certificate_cli.py::"
HSTS = I + "test_https_hsts.py::"
TOP = I + "test_cli_top.py::"
TOP_U = U + "test_cli_top_frame.py::"
UDP = I + "test_udp_proxy.py::"
HEALTH = I + "test_health_checks.py::"
_BACKEND_LIST = (
    I + "test_udp_health.py::"
    "test_a_silent_udp_probe_takes_the_backend_out_and_a_reply_brings_it_back"
)
SEND = I + "test_tcp_send_proxy.py::"
_CHECK_SET = HEALTH + "test_a_check_set_at_run_time_with_an_expected_status"
_CHECK_REMOVE = HEALTH + "test_removing_the_check_puts_backends_back"

# 4.1 top-level keys
TOP_LEVEL: dict[str, Proof] = {
    "command_socket": Tested(
        I + "test_main_config_errors.py::test_cli_without_a_running_proxy_says_so"
    ),
    "command_buffer_size": Tested(I + "test_channel.py::test_oversized_frame_is_refused"),
    "max_command_buffer_size": Tested(I + "test_channel.py::test_oversized_frame_is_refused"),
    "ctl_command_timeout": Tested(CONFIG_T + "test_top_level_defaults_are_sozus"),
    "worker_count": Tested(VERBS + "test_a_listener_added_at_runtime_serves_through_every_worker"),
    "worker_automatic_restart": Tested(
        I + "test_main_traffic.py::test_no_automatic_restart_means_no_restart"
    ),
    "worker_timeout": Tested(
        I + "test_main_workers.py::test_a_silent_worker_is_named_and_main_keeps_serving"
    ),
    "handle_process_affinity": Warned(True),
    "pid_file_path": Tested(I + "test_main_command_socket.py::test_pid_file_lives_as_long_as_main"),
    "saved_state": Tested(
        I + "test_main_traffic.py::test_saved_state_brings_back_the_runtime_routes"
    ),
    "automatic_state_save": Tested(
        I + "test_main_traffic.py::test_automatic_state_save_keeps_the_file_current"
    ),
    "log_level": Tested(VERBS + "test_logging_level_changes"),
    "log_target": Tested(
        I
        + "test_observability_log_targets.py::test_tcp_target_gets_a_stream_of_lines_from_each_process"
    ),
    "log_colored": Tested(
        I
        + "test_observability_log_colours.py::test_log_colored_colours_main_workers_and_access_lines_on_stdout"
    ),
    "access_logs_target": Tested(ACCESS + "test_one_line_per_request"),
    "access_logs_format": Tested(ACCESS + "test_one_line_per_request"),
    "access_logs_colored": Tested(
        I
        + "test_observability_log_colours.py::test_access_logs_colored_false_keeps_access_lines_plain"
    ),
    "audit_logs_target": Tested(
        I + "test_main_audit.py::test_state_changes_are_audited_in_text_and_json_files"
    ),
    "audit_logs_json_target": Tested(
        I + "test_main_audit.py::test_state_changes_are_audited_in_text_and_json_files"
    ),
    "max_connections": Tested(
        I + "test_http_worker.py::test_max_connections_stops_accepting_then_resumes"
    ),
    "min_buffers": Tested(U + "test_buffers.py::test_buffers_are_reused_most_recent_first"),
    "max_buffers": Tested(
        I
        + "test_http_memory.py::test_with_max_buffers_reached_new_requests_wait_and_are_then_served"
    ),
    "buffer_size": Tested(
        I + "test_http_relay_buffers.py::test_response_head_larger_than_buffer_size_is_refused"
    ),
    "slab_entries_per_connection": Warned(4),
    "front_timeout": Tested(LIMITS + "test_idle_keep_alive_connection_is_closed"),
    "back_timeout": Tested(LIMITS + "test_silent_backend_gets_504"),
    "connect_timeout": Tested(LIMITS + "test_connect_timeout_moves_on_to_the_next_backend"),
    "request_timeout": Tested(LIMITS + "test_slow_request_head_gets_408"),
    "zombie_check_interval": Warned(1800),
    "accept_queue_timeout": Warned(60),
    "evict_on_queue_full": Tested(
        I + "test_http_eviction.py::test_a_waiting_connection_evicts_the_longest_idle_one"
    ),
    "activate_listeners": Tested(
        CONFIG_T + "test_activate_listeners_false_adds_without_activating"
    ),
    "max_connections_per_ip": Tested(
        LIMITS + "test_max_connections_per_ip_answers_429_with_retry_after"
    ),
    "retry_after": Tested(LIMITS + "test_max_connections_per_ip_answers_429_with_retry_after"),
    "basic_auth_max_credential_bytes": Warned(8192),
    "splice_pipe_capacity_bytes": Warned(65536),
    "command_allowed_uids": Tested(
        I
        + "test_main_command_auth.py::test_a_uid_outside_the_list_gets_a_failure_then_the_connection_closes"
    ),
    "disable_cluster_metrics": Tested(
        I + "test_observability_statsd.py::test_disable_cluster_metrics_sends_process_keys_only"
    ),
    "metrics": Tested(
        "tests/integration/test_observability_metrics.py::test_figures_after_known_traffic"
    ),
    "listeners": Tested(I + "test_main_traffic.py::test_two_clusters_each_get_their_own_traffic"),
    "clusters": Tested(I + "test_main_traffic.py::test_two_clusters_each_get_their_own_traffic"),
}
# [metrics]: sozu's StatsD drain (main polls the workers); `detail` also bounds `metrics get`
# and Prometheus.
METRICS: dict[str, Proof] = {
    "address": Tested(
        I + "test_observability_statsd.py::test_untagged_lines_count_the_requests_sent"
    ),
    "tagged_metrics": Tested(I + "test_observability_statsd.py::test_tagged_lines_with_a_prefix"),
    "prefix": Tested(I + "test_observability_statsd.py::test_tagged_lines_with_a_prefix"),
    "detail": Tested(U + "test_worker_metrics.py::test_detail_levels_bound_what_is_reported"),
}

# 4.2 listener keys: (protocol of the listener the walk writes, proof)
H2_LIMITS = "tests/unit/test_http2_front.py::test_every_h2_listener_key_reaches_the_limits"
H2 = "tests/integration/test_http2.py::"
H2_LISTENER_KEYS = (
    "h2_max_rst_stream_per_window",
    "h2_max_ping_per_window",
    "h2_max_settings_per_window",
    "h2_max_empty_data_per_window",
    "h2_max_window_update_stream0_per_window",
    "h2_max_continuation_frames",
    "h2_max_glitch_count",
    "h2_max_rst_stream_lifetime",
    "h2_max_rst_stream_abusive_lifetime",
    "h2_max_rst_stream_emitted_lifetime",
    "h2_initial_connection_window",
    "h2_max_concurrent_streams",
    "h2_stream_shrink_ratio",
    "h2_max_header_list_size",
    "h2_max_header_table_size",
    "h2_max_header_fields",
    "h2_stream_idle_timeout_seconds",
    "h2_graceful_shutdown_deadline_seconds",
)
ANSWER_CODES = (301, 400, 401, 404, 408, 413, 421, 429, 502, 503, 504, 507)
LISTENER: dict[str, tuple[str, Proof]] = {
    "address": (
        "http",
        Tested(I + "test_main_traffic.py::test_two_clusters_each_get_their_own_traffic"),
    ),
    "protocol": (
        "http",
        Tested(I + "test_main_traffic.py::test_two_clusters_each_get_their_own_traffic"),
    ),
    "public_address": (
        "http",
        Tested(
            I
            + "test_lifecycle_reconfigure.py::test_reload_keeps_a_listener_updated_at_runtime_online"
        ),
    ),
    "expect_proxy": (
        "http",
        Tested(
            I
            + "test_proxy_protocol.py::test_the_source_is_the_client_address_in_every_forwarding_header"
        ),
    ),
    "front_timeout": ("http", Tested(LIMITS + "test_idle_keep_alive_connection_is_closed")),
    "back_timeout": ("http", Tested(LIMITS + "test_silent_backend_gets_504")),
    "connect_timeout": (
        "http",
        Tested(LIMITS + "test_connect_timeout_moves_on_to_the_next_backend"),
    ),
    "request_timeout": ("http", Tested(LIMITS + "test_slow_request_head_gets_408")),
    "sticky_name": (
        "http",
        Tested(
            I
            + "test_http_cluster_overrides.py::test_sticky_name_of_a_cluster_names_its_cookie_both_ways"
        ),
    ),
    "answers": (
        "http",
        Tested(U + "test_answers.py::test_legacy_http_answers_complete_the_answers_map"),
    ),
    **{
        f"answer_{code}": (
            "http",
            Tested(U + "test_answers.py::test_legacy_http_answers_complete_the_answers_map"),
        )
        for code in ANSWER_CODES
    },
    "sozu_id_header": (
        "http",
        Tested(I + "test_http_headers.py::test_custom_request_id_header_name"),
    ),
    "elide_x_real_ip": ("http", Tested(I + "test_http_headers.py::test_x_real_ip_options")),
    "send_x_real_ip": ("http", Tested(I + "test_http_headers.py::test_x_real_ip_options")),
    **{
        key: ("http", Tested(H2_LIMITS) if key != "h2_stream_shrink_ratio" else Warned(7))
        for key in H2_LISTENER_KEYS
    },
    "tls_versions": ("https", Tested(SNI + "test_listener_tls_versions")),
    "cipher_list": ("https", Tested(SNI + "test_cipher_list_restricts_tls12_suites")),
    "cipher_suites": (
        "https",
        Tested(U + "test_tls_store.py::test_tls13_only_cipher_list_disables_tls12"),
    ),
    "groups_list": ("https", Warned(["x25519"])),
    "certificate": (
        "https",
        Tested(CONFIG_T + "test_listener_default_certificate_serves_frontends_without_one"),
    ),
    "certificate_chain": (
        "https",
        Tested(U + "test_tls_store.py::test_chain_order_is_checked_and_duplicate_leaf_dropped"),
    ),
    "key": (
        "https",
        Tested(CONFIG_T + "test_listener_default_certificate_serves_frontends_without_one"),
    ),
    "send_tls13_tickets": (
        "https",
        Tested(U + "test_tls_store.py::test_disable_http11_offers_h2_only_and_tickets"),
    ),
    "alpn_protocols": ("https", Tested(H2 + "test_alpn_order_and_disable_http11_reach_clients")),
    "strict_sni_binding": ("https", Tested(SNI + "test_strict_sni_binding_can_be_turned_off")),
    "disable_http11": (
        "https",
        Tested(
            U + "test_tls_transport_listener.py::test_alpn_offers_the_listeners_protocols_in_order"
        ),
    ),
    "hsts": (
        "https",
        Tested(HSTS + "test_listener_hsts_is_added_once_and_the_backend_header_wins"),
    ),
    "max_rx_datagram_size": (
        "udp",
        Tested(UDP + "test_an_oversized_datagram_is_dropped_and_counted"),
    ),
    "max_flows": ("udp", Tested(UDP + "test_the_flow_table_is_bounded_and_evicts_the_oldest")),
}

# 4.3 cluster keys: (cluster protocol, proof)
CLUSTER: dict[str, tuple[str, Proof]] = {
    "protocol": (
        "http",
        Tested(I + "test_main_traffic.py::test_two_clusters_each_get_their_own_traffic"),
    ),
    "frontends": (
        "http",
        Tested(I + "test_main_traffic.py::test_two_clusters_each_get_their_own_traffic"),
    ),
    "backends": (
        "http",
        Tested(I + "test_main_traffic.py::test_two_clusters_each_get_their_own_traffic"),
    ),
    "load_balancing": ("http", Tested(LB + "test_power_of_two_picks_one_of_the_two_lightest")),
    "load_metric": ("http", Tested(LB + "test_least_loaded_by_connection_time")),
    "sticky_session": ("http", Tested(I + "test_http_headers.py::test_sticky_sessions")),
    "https_redirect": (
        "http",
        Tested(SNI + "test_https_redirect_sends_plain_http_clients_to_https"),
    ),
    "https_redirect_port": (
        "http",
        Tested(SNI + "test_https_redirect_sends_plain_http_clients_to_https"),
    ),
    "send_proxy": ("tcp", Tested(SEND + "test_send_proxy_puts_the_client_address_in_a_v2_header")),
    "http2": ("http", Tested(I + "test_http1_to_h2c.py::test_get_and_post_reach_the_h2c_backend")),
    "answers": (
        "http",
        Tested(
            I
            + "test_lifecycle_reconfigure.py::test_200_hot_changes_under_load_are_saved_atomically"
        ),
    ),
    "answer_503": ("http", Tested(CONFIG_T + "test_answers_files_are_read_relative_to_the_config")),
    "authorized_hashes": ("http", Tested(POLICY + "test_basic_auth")),
    "www_authenticate": ("http", Tested(POLICY + "test_basic_auth")),
    "max_connections_per_ip": (
        "http",
        Tested(LIMITS + "test_max_connections_per_ip_answers_429_with_retry_after"),
    ),
    "retry_after": (
        "http",
        Tested(LIMITS + "test_max_connections_per_ip_answers_429_with_retry_after"),
    ),
    "health_check": (
        "http",
        Tested(HEALTH + "test_an_unhealthy_backend_leaves_rotation_and_comes_back"),
    ),
    "udp": ("tcp", Tested(UDP + "test_source_ip_port_affinity_keeps_each_client_on_one_backend")),
}

# 4.4 frontend keys (http cluster)
FRONTEND: dict[str, Proof] = {
    "address": Tested(I + "test_main_traffic.py::test_two_clusters_each_get_their_own_traffic"),
    "hostname": Tested(I + "test_main_traffic.py::test_two_clusters_each_get_their_own_traffic"),
    "path": Tested(I + "test_http_routing_paths.py::test_no_spelling_of_admin_escapes_a_deny_rule"),
    "path_type": Tested(
        I + "test_http_routing_paths.py::test_no_spelling_of_admin_escapes_a_deny_rule"
    ),
    "method": Tested(ROUTER + "test_method_only_rule_does_not_match_other_methods"),
    "certificate": Tested(SNI + "test_two_clusters_routed_by_sni_with_their_certificates"),
    "key": Tested(SNI + "test_two_clusters_routed_by_sni_with_their_certificates"),
    "certificate_chain": Tested(
        U + "test_tls_store.py::test_chain_order_is_checked_and_duplicate_leaf_dropped"
    ),
    "tls_versions": Warned(["TLS_V13"]),
    "position": Tested(ROUTER + "test_pre_rules_run_before_the_tree_first_match_wins"),
    "tags": Tested(U + "test_access_log.py::test_ascii_line_in_sozu_layout"),
    "redirect": Tested(POLICY + "test_redirects"),
    "redirect_scheme": Tested(POLICY + "test_redirects"),
    "redirect_template": Tested(POLICY + "test_redirects"),
    "rewrite_host": Tested(POLICY + "test_rewrites"),
    "rewrite_path": Tested(POLICY + "test_rewrites"),
    "rewrite_port": Tested(POLICY + "test_rewrites"),
    "required_auth": Tested(POLICY + "test_basic_auth"),
    "headers": Tested(POLICY + "test_header_edits"),
    "hsts": Tested(SNI + "test_hsts_from_the_listener_and_the_frontend"),
}

# 4.5 backend keys
BACKEND: dict[str, Proof] = {
    "address": Tested(I + "test_main_traffic.py::test_two_clusters_each_get_their_own_traffic"),
    "weight": Tested(LB + "test_weighted_random_follows_weights"),
    "sticky_id": Tested(I + "test_http_headers.py::test_sticky_sessions"),
    "backup": Tested(LB + "test_backups_only_when_no_primary_can_open"),
    "backend_id": Tested(VERBS + "test_the_issue_walkthrough"),
}

# Verbs about what pysozu does not serve yet: refused (add, set) or acting on nothing that
# serves (remove, update...); their flags need no entry of their own. (None left.)
UNSERVED_VERBS: tuple[str, ...] = ()

# What a CLI walk adds to a verb path so that it parses (for Warned entries).
CLI_REQUIRED: dict[str, tuple[str, ...]] = {
    "listener http update": ("-a", "127.0.0.1:9"),
    "listener https update": ("-a", "127.0.0.1:9"),
    "cluster add": ("-i", "c"),
    "cluster h2 enable": ("-i", "c"),
    "certificate add": ("-a", "127.0.0.1:9", "--certificate", "c.pem", "--key", "k.pem"),
    "certificate replace": (
        "-a",
        "127.0.0.1:9",
        "--new-certificate",
        "c.pem",
        "--new-key",
        "k.pem",
        "-f",
        "ab",
    ),
}

# 5. CLI: verb path -> {flag: proof}; "" is the verb itself (Warned(True): a flag without value). A flag's test is the behaviour
# test of what it sets (the CLI's mapping of flags to request fields: test_cli_tree.py).
GLOBAL_FLAGS: dict[str, Proof] = {
    "--config": Tested(VERBS + "test_the_issue_walkthrough"),
    "--timeout": Tested(CLI_T + "test_health_check_timeout_is_not_the_global_timeout"),
    "--json": Tested(VERBS + "test_the_issue_walkthrough"),
}
_ADD_CLUSTER = CLI_T + "test_cluster_add_flags"
_FRONTEND = CLI_T + "test_frontend_deny_route_and_path_kinds"
_LISTENER_ADD = CLI_T + "test_listener_add_and_activate"
_LISTENER_UPDATE = CLI_T + "test_listener_update_only_patches_what_is_given"
_TCP_CLI = I + "test_tcp_proxy.py::test_listener_and_frontend_added_and_removed_through_the_cli"
_SOZU_LINES = CLI_T + "test_sozu_command_lines_send_what_sozu_sends"
_UDP_CLI = UDP + "test_udp_listener_and_frontend_added_and_removed_through_the_cli"
_UDP_FLAGS: dict[str, Proof] = {
    flag: Tested(_UDP_CLI)
    for flag in (
        "--public-address",
        "--front-timeout",
        "--back-timeout",
        "--max-rx-datagram-size",
        "--max-flows",
    )
}
_H2_FLAGS = {
    "--" + key.replace("_", "-"): Tested(H2_LIMITS)
    if key != "h2_stream_shrink_ratio"
    else Warned(7)
    for key in H2_LISTENER_KEYS
}
_ANSWER_FLAGS = {
    f"--answer-{code}": Tested(_LISTENER_UPDATE) for code in ANSWER_CODES if code != 400
}
_HTTP_LISTENER_ADD = {
    "": Tested(VERBS + "test_a_listener_added_at_runtime_serves_through_every_worker"),
    "--address": Tested(VERBS + "test_a_listener_added_at_runtime_serves_through_every_worker"),
    "--public-address": Tested(_LISTENER_ADD),
    "--answer-404": Tested(_LISTENER_ADD),
    "--answer-503": Tested(_LISTENER_ADD),
    "--expect-proxy": Tested(_LISTENER_ADD),
    "--sticky-name": Tested(_LISTENER_ADD),
    "--front-timeout": Tested(_LISTENER_ADD),
    "--back-timeout": Tested(_LISTENER_ADD),
    "--request-timeout": Tested(_LISTENER_ADD),
    "--connect-timeout": Tested(_LISTENER_ADD),
}
_HTTP_LISTENER_UPDATE = {
    "": Tested(I + "test_http_worker.py::test_update_http_listener_applies_live"),
    "--address": Tested(_LISTENER_UPDATE),
    "--public-address": Tested(_LISTENER_UPDATE),
    "--sticky-name": Tested(_LISTENER_UPDATE),
    "--front-timeout": Tested(_LISTENER_UPDATE),
    "--back-timeout": Tested(_LISTENER_UPDATE),
    "--request-timeout": Tested(_LISTENER_UPDATE),
    "--connect-timeout": Tested(_LISTENER_UPDATE),
    "--expect-proxy": Tested(_LISTENER_UPDATE),
    "--no-expect-proxy": Tested(_LISTENER_UPDATE),
    "--sozu-id-header": Tested(I + "test_http_worker.py::test_update_http_listener_applies_live"),
    **_ANSWER_FLAGS,
    **_H2_FLAGS,
}
_HSTS_FLAGS = {
    f"--hsts-{name}": Tested(HSTS + "test_cli_sets_frontend_hsts_and_patches_the_listener_default")
    for name in ("max-age", "include-subdomains", "preload", "disabled", "force-replace-backend")
}
_FRONTEND_HTTP_ADD = {
    "": Tested(VERBS + "test_the_issue_walkthrough"),
    "--address": Tested(VERBS + "test_the_issue_walkthrough"),
    "--hostname": Tested(VERBS + "test_the_issue_walkthrough"),
    "--path-prefix": Tested(_FRONTEND),
    "--path-regex": Tested(_FRONTEND),
    "--path-equals": Tested(
        I + "test_http_routing_paths.py::test_no_spelling_of_admin_escapes_a_deny_rule"
    ),
    "--method": Tested(ROUTER + "test_method_only_rule_does_not_match_other_methods"),
    "--tags": Tested(CLI_T + "test_tags_are_parsed"),
    "--redirect": Tested(POLICY + "test_redirects"),
    "--redirect-scheme": Tested(POLICY + "test_redirects"),
    "--redirect-template": Tested(POLICY + "test_redirects"),
    "--rewrite-host": Tested(POLICY + "test_rewrites"),
    "--rewrite-path": Tested(POLICY + "test_rewrites"),
    "--rewrite-port": Tested(POLICY + "test_rewrites"),
    "--required-auth": Tested(POLICY + "test_basic_auth"),
    "--header": Tested(_FRONTEND),
    **_HSTS_FLAGS,
}
_FRONTEND_HTTP_REMOVE = {"": Tested(VERBS + "test_a_refused_change_fails_with_the_reason")}
_LISTENER_OTHER = {
    "": Tested(VERBS + "test_a_listener_added_at_runtime_serves_through_every_worker"),
    "--address": Tested(VERBS + "test_a_listener_added_at_runtime_serves_through_every_worker"),
}
CLI: dict[str, dict[str, Proof]] = {
    "start": {"": Tested(I + "test_main_traffic.py::test_start_without_config_serves_the_demo")},
    "shutdown": {
        "": Tested(I + "test_lifecycle_stop.py::test_hard_stop_does_not_wait"),
        "--hard": Tested(I + "test_lifecycle_stop.py::test_hard_stop_does_not_wait"),
    },
    "upgrade": {
        "": Tested(I + "test_lifecycle_upgrade.py::test_upgrade_main_and_every_worker_under_load"),
        "--worker": Tested(VERBS + "test_upgrade_of_an_unknown_worker_fails"),
    },
    "status": {"": Tested(VERBS + "test_the_issue_walkthrough")},
    "metrics enable": {"": Tested(VERBS + "test_metrics_are_gathered_from_the_workers")},
    "metrics disable": {"": Tested(VERBS + "test_metrics_are_gathered_from_the_workers")},
    "metrics clear": {
        "": Tested(
            U + "test_worker_metrics.py::test_clear_starts_again_from_zero_and_keeps_sources"
        )
    },
    "metrics get": {
        "": Tested(VERBS + "test_metrics_are_gathered_from_the_workers"),
        "--list": Tested(U + "test_worker_metrics.py::test_available_lists_names_without_labels"),
        "--refresh": Tested(CLI_T + "test_listener_help_gives_units_and_defaults"),
        "--names": Tested(VERBS + "test_metrics_are_gathered_from_the_workers"),
        "--clusters": Tested(
            U + "test_worker_metrics.py::test_query_options_filter_clusters_backends_and_names"
        ),
        "--backends": Tested(
            U + "test_worker_metrics.py::test_query_options_filter_clusters_backends_and_names"
        ),
        "--no-clusters": Tested(
            U + "test_worker_metrics.py::test_query_options_filter_clusters_backends_and_names"
        ),
        "--workers": Tested(
            U + "test_worker_metrics.py::test_query_options_filter_clusters_backends_and_names"
        ),
    },
    "logging": {"": Tested(VERBS + "test_logging_level_changes")},
    "state save": {
        "": Tested(VERBS + "test_state_load_merges"),
        "--file": Tested(VERBS + "test_state_load_merges"),
    },
    "state load": {
        "": Tested(VERBS + "test_state_load_merges"),
        "--file": Tested(VERBS + "test_state_load_merges"),
    },
    "state stats": {"": Tested(VERBS + "test_the_issue_walkthrough")},
    "reload": {
        "": Tested(VERBS + "test_reload_applies_the_difference"),
        "--file": Tested(VERBS + "test_reload_applies_the_difference"),
    },
    "cluster list": {
        "": Tested(VERBS + "test_the_issue_walkthrough"),
        "--id": Tested(VERBS + "test_the_issue_walkthrough"),
        "--domain": Tested(
            I + "test_http_worker.py::test_queries_are_answered_from_the_worker_state"
        ),
    },
    "cluster add": {
        "": Tested(VERBS + "test_the_issue_walkthrough"),
        "--id": Tested(VERBS + "test_the_issue_walkthrough"),
        "--sticky-session": Tested(_ADD_CLUSTER),
        "--https-redirect": Tested(_ADD_CLUSTER),
        "--send-proxy": Tested(SEND + "test_cluster_add_send_proxy_at_run_time"),
        "--expect-proxy": Warned(True),
        "--load-balancing-policy": Tested(VERBS + "test_the_issue_walkthrough"),
        "--http2": Tested(
            I + "test_http1_to_h2c.py::test_cluster_add_http2_and_h2_enable_from_the_cli"
        ),
        "--https-redirect-port": Tested(_ADD_CLUSTER),
        "--www-authenticate": Tested(_ADD_CLUSTER),
        "--authorized-hash": Tested(_ADD_CLUSTER),
        "--answer": Tested(_ADD_CLUSTER),
    },
    "cluster remove": {"": Tested(VERBS + "test_a_refused_change_fails_with_the_reason")},
    "cluster h2 enable": {
        "": Tested(I + "test_http1_to_h2c.py::test_cluster_add_http2_and_h2_enable_from_the_cli")
    },
    "cluster h2 disable": {"": Tested(_ADD_CLUSTER)},
    "cluster health-check set": {
        "": Tested(_CHECK_SET),
        "--uri": Tested(_CHECK_SET),
        **{
            flag: Tested(_CHECK_SET)
            for flag in (
                "--interval",
                "--timeout",
                "--healthy-threshold",
                "--unhealthy-threshold",
                "--expected-status",
            )
        },
    },
    "cluster health-check remove": {"": Tested(_CHECK_REMOVE)},
    "cluster health-check list": {"": Tested(_CHECK_REMOVE)},
    "backend add": {
        "": Tested(VERBS + "test_the_issue_walkthrough"),
        "--id": Tested(VERBS + "test_the_issue_walkthrough"),
        "--backend-id": Tested(VERBS + "test_the_issue_walkthrough"),
        "--address": Tested(VERBS + "test_the_issue_walkthrough"),
        "--sticky-id": Tested(I + "test_http_headers.py::test_sticky_sessions"),
        "--backup": Tested(LB + "test_backups_only_when_no_primary_can_open"),
    },
    "backend remove": {"": Tested(I + "test_main_traffic.py::test_blue_green_under_traffic")},
    # pysozu extension: backends with their health-check verdicts
    "backend list": {
        "": Tested(_BACKEND_LIST),
        "--id": Tested(_BACKEND_LIST),
        "--domain": Tested(HEALTH + "test_an_unhealthy_backend_leaves_rotation_and_comes_back"),
    },
    "frontend http add": _FRONTEND_HTTP_ADD,
    "frontend https add": _FRONTEND_HTTP_ADD,
    "frontend http remove": _FRONTEND_HTTP_REMOVE,
    "frontend https remove": _FRONTEND_HTTP_REMOVE,
    "frontend tcp add": {
        "": Tested(_TCP_CLI),
        "--id": Tested(_TCP_CLI),
        "--address": Tested(_TCP_CLI),
        "--tags": Tested(_SOZU_LINES),
    },
    "frontend tcp remove": {
        "": Tested(_TCP_CLI),
        "--id": Tested(_TCP_CLI),
        "--address": Tested(_TCP_CLI),
    },
    "frontend udp add": {"": Tested(_UDP_CLI), "--tags": Tested(_UDP_CLI)},
    "frontend udp remove": {"": Tested(_UDP_CLI)},
    "frontend list": {
        "": Tested(VERBS + "test_human_tables"),
        "--http": Tested(VERBS + "test_human_tables"),
        "--https": Tested(VERBS + "test_human_tables"),
        "--tcp": Tested(VERBS + "test_human_tables"),
        "--domain": Tested(VERBS + "test_human_tables"),
    },
    "listener http add": _HTTP_LISTENER_ADD,
    "listener https add": {
        **_HTTP_LISTENER_ADD,
        "--tls-versions": Tested(CLI_T + "test_a_bad_item_of_a_list_is_a_usage_error"),
        "--tls-cipher-list": Tested(SNI + "test_cipher_list_restricts_tls12_suites"),
        # documented by sozu, not in its parser either
        "--tls-cipher-suites": Refused(
            ("listener", "https", "add", "-a", "127.0.0.1:9", "--tls-cipher-suites", "x")
        ),
        "--tls-signature-algorithms": Refused(
            ("listener", "https", "add", "-a", "127.0.0.1:9", "--tls-signature-algorithms", "x")
        ),
        "--tls-groups-list": Refused(
            ("listener", "https", "add", "-a", "127.0.0.1:9", "--tls-groups-list", "x")
        ),
    },
    "listener http update": _HTTP_LISTENER_UPDATE,
    "listener https update": {
        **_HTTP_LISTENER_UPDATE,
        "--strict-sni-binding": Tested(SNI + "test_strict_sni_binding_can_be_turned_off"),
        "--no-strict-sni-binding": Tested(
            I + "test_https_certificates.py::test_https_listener_added_updated_removed_at_run_time"
        ),
        "--disable-http11": Tested(
            I + "test_https_certificates.py::test_https_listener_added_updated_removed_at_run_time"
        ),
        "--enable-http11": Tested(
            I + "test_https_certificates.py::test_https_listener_added_updated_removed_at_run_time"
        ),
        "--reset-alpn": Tested(CLI_T + "test_alpn_protocols_comma_separated_as_sozu_takes_them"),
        **{
            flag: Tested(HSTS + "test_cli_sets_frontend_hsts_and_patches_the_listener_default")
            for flag in _HSTS_FLAGS
        },
    },
    **{
        f"listener {kind} {verb}": _LISTENER_OTHER
        for kind in ("http", "https")
        for verb in ("remove", "activate", "deactivate")
    },
    "listener tcp add": {
        "": Tested(_TCP_CLI),
        "--address": Tested(_TCP_CLI),
        "--front-timeout": Tested(_TCP_CLI),
        "--public-address": Tested(_SOZU_LINES),
        "--expect-proxy": Tested(_SOZU_LINES),
        "--back-timeout": Tested(_LISTENER_ADD),
        "--connect-timeout": Tested(_LISTENER_ADD),
    },
    "listener tcp update": {
        "": Tested(_SOZU_LINES),
        "--address": Tested(_SOZU_LINES),
        "--front-timeout": Tested(_SOZU_LINES),
        "--expect-proxy": Tested(_SOZU_LINES),
        "--no-expect-proxy": Tested(_LISTENER_UPDATE),
        "--public-address": Tested(_LISTENER_UPDATE),
        "--back-timeout": Tested(_LISTENER_UPDATE),
        "--connect-timeout": Tested(_LISTENER_UPDATE),
    },
    **{
        f"listener tcp {verb}": {"": Tested(_TCP_CLI), "--address": Tested(_TCP_CLI)}
        for verb in ("remove", "activate", "deactivate")
    },
    **{f"listener udp {verb}": {"": Tested(_UDP_CLI), **_UDP_FLAGS} for verb in ("add", "update")},
    **{
        f"listener udp {verb}": {"": Tested(_UDP_CLI)}
        for verb in ("remove", "activate", "deactivate")
    },
    "listener list": {"": Tested(VERBS + "test_the_issue_walkthrough")},
    "certificate list": {
        "": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--fingerprint": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--domain": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--workers": Tested(CERTS + "test_list_workers_asks_each_worker"),
    },
    "certificate add": {
        "": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--address": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--certificate": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--certificate-chain": Tested(
            I + "test_https_certificates.py::test_add_replace_remove_and_list"
        ),
        "--key": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--tls-versions": Warned("TLS_V1_3"),
    },
    "certificate remove": {
        "": Tested(I + "test_https_certificates.py::test_add_replace_remove_and_list"),
        "--certificate": Tested(I + "test_https_certificates.py::test_add_replace_remove_and_list"),
        "--fingerprint": Tested(I + "test_https_certificates.py::test_add_replace_remove_and_list"),
    },
    "certificate replace": {
        "": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--new-certificate": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--new-certificate-chain": Tested(
            I + "test_https_certificates.py::test_add_replace_remove_and_list"
        ),
        "--new-key": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--old-certificate": Tested(
            I + "test_https_certificates.py::test_add_replace_remove_and_list"
        ),
        "--fingerprint": Tested(CERTS + "test_add_list_replace_without_a_chain"),
        "--tls-versions": Warned("TLS_V1_3"),
    },
    "config check": {
        "": Tested(I + "test_main_config_errors.py::test_config_check_accepts_a_good_file")
    },
    "events": {"": Tested(VERBS + "test_events_stream_configuration_changes")},
    "connection-limit set": {
        "": Tested(LIMITS + "test_max_connections_per_ip_answers_429_with_retry_after")
    },
    "connection-limit remove": {
        "": Tested(LIMITS + "test_max_connections_per_ip_answers_429_with_retry_after")
    },
    "connection-limit show": {
        "": Tested(LIMITS + "test_max_connections_per_ip_answers_429_with_retry_after")
    },
    "top": {
        "": Tested(TOP + "test_top_shows_the_cluster_and_its_request_rate_then_q_quits"),
        "--refresh-ms": Tested(
            TOP + "test_top_shows_the_cluster_and_its_request_rate_then_q_quits"
        ),
        "--detail": Tested(
            TOP_U + "test_the_detail_lease_asks_for_the_detail_and_ttl_and_is_renewed_at_half"
        ),
        "--lease-ttl-seconds": Tested(
            TOP_U + "test_the_detail_lease_asks_for_the_detail_and_ttl_and_is_renewed_at_half"
        ),
        "--snapshot": Tested(TOP + "test_snapshot_prints_frames_without_a_terminal"),
        "--tick-once": Tested(TOP + "test_snapshot_prints_frames_without_a_terminal"),
        "--skin": Warned("dark"),
        "--glyphs": Warned("tty"),
        "--no-mouse": Warned(True),
    },
}
