{{/*
The proxy's configuration file (sozu-style TOML). Listener addresses and the command
socket come from the same values as the container ports and the socket volume.
*/}}
{{- define "pysozu.configToml" -}}
{{- $c := .Values.config -}}
# pysozu configuration, rendered by the pysozu Helm chart. Times in seconds, sizes in bytes.
command_socket = {{ include "pysozu.commandSocket" . | quote }}
worker_count = {{ $c.workerCount }}
worker_automatic_restart = {{ $c.workerAutomaticRestart }}
worker_timeout = {{ $c.workerTimeout }}
log_level = {{ $c.logLevel | quote }}
log_target = "stdout"
max_connections = {{ $c.maxConnections }}
buffer_size = {{ $c.buffers.size }}
min_buffers = {{ $c.buffers.min }}
max_buffers = {{ $c.buffers.max }}
front_timeout = {{ $c.timeouts.front }}
back_timeout = {{ $c.timeouts.back }}
connect_timeout = {{ $c.timeouts.connect }}
request_timeout = {{ $c.timeouts.request }}
{{- with $c.extraToml }}

# config.extraToml
{{ . | trim }}
{{- end }}

[prometheus]
address = "0.0.0.0:{{ .Values.ports.metrics }}"

# The ingress controller adds frontends, clusters and backends to these listeners.
[[listeners]]
protocol = "http"
address = "0.0.0.0:{{ .Values.ports.http }}"
{{- include "pysozu.httpListenerKeys" . }}

[[listeners]]
protocol = "https"
address = "0.0.0.0:{{ .Values.ports.https }}"
{{- include "pysozu.httpListenerKeys" . }}
{{- if .Values.defaultTLSCertificate.secretName }}
# The default certificate (defaultTLSCertificate.secretName), for SNI no Ingress names.
certificate = "{{ include "pysozu.defaultTlsDir" . }}/tls.crt"
key = "{{ include "pysozu.defaultTlsDir" . }}/tls.key"
{{- end }}
{{- range .Values.extraListeners }}

# extraListeners: {{ .name }} (its cluster: config.extraToml, or added at run time)
[[listeners]]
protocol = {{ lower .protocol | quote }}
address = "0.0.0.0:{{ int .containerPort }}"
{{- if hasKey . "frontTimeout" }}
front_timeout = {{ int .frontTimeout }}
{{- end }}
{{- if hasKey . "backTimeout" }}
back_timeout = {{ int .backTimeout }}
{{- end }}
{{- if hasKey . "connectTimeout" }}
connect_timeout = {{ int .connectTimeout }}
{{- end }}
{{- if .expectProxy }}
expect_proxy = true
{{- end }}
{{- if hasKey . "maxFlows" }}
max_flows = {{ int64 .maxFlows }}
{{- end }}
{{- if hasKey . "maxRxDatagramSize" }}
max_rx_datagram_size = {{ int .maxRxDatagramSize }}
{{- end }}
{{- end }}
{{ end }}

{{/* config.listeners: keys of the generated HTTP and HTTPS listeners. */}}
{{- define "pysozu.httpListenerKeys" -}}
{{- with .Values.config.listeners }}
{{- with .trustedProxies }}
trusted_proxies = {{ toJson . }}
{{- end }}
{{- if .expectProxy }}
expect_proxy = true
{{- end }}
{{- end }}
{{- end }}
