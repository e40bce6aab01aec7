{{/*
Names, labels and the fixed facts shared by every template.
*/}}

{{- define "pysozu.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pysozu.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pysozu.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "pysozu.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pysozu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pysozu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pysozu.labels" -}}
helm.sh/chart: {{ include "pysozu.chart" . }}
{{ include "pysozu.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: pysozu
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "pysozu.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pysozu.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pysozu.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Where the proxy's command socket lives: an emptyDir shared by both containers. */}}
{{- define "pysozu.runDir" -}}/run/pysozu{{- end }}
{{- define "pysozu.commandSocket" -}}{{ include "pysozu.runDir" . }}/pysozu.sock{{- end }}
{{- define "pysozu.configDir" -}}/etc/pysozu{{- end }}
{{- define "pysozu.configFile" -}}{{ include "pysozu.configDir" . }}/config.toml{{- end }}
{{- define "pysozu.defaultTlsDir" -}}/etc/pysozu-tls{{- end }}

{{/* The lowest listener port (HTTP, HTTPS, extraListeners). */}}
{{- define "pysozu.lowestListenerPort" -}}
{{- $lowest := min .Values.ports.http .Values.ports.https }}
{{- range .Values.extraListeners }}{{ $lowest = min $lowest .containerPort }}{{ end }}
{{- int $lowest }}
{{- end }}

{{/* The lowest listener port when one is below 1024 (and the pod has its own network). */}}
{{- define "pysozu.unprivilegedPortStart" -}}
{{- $lowest := int (include "pysozu.lowestListenerPort" .) }}
{{- if and (lt $lowest 1024) (not .Values.hostNetwork) }}{{ $lowest }}{{ end }}
{{- end }}

{{/* The Lease pysozu-ingress elects its status writer with (--election-id): one per release,
so two releases in one namespace each elect their own leader. */}}
{{- define "pysozu.leaseName" -}}
{{- .Values.controller.electionID | default (printf "%s-leader" (include "pysozu.fullname" .)) }}
{{- end }}

{{/* The Service whose address goes into Ingress status, as namespace/name. */}}
{{- define "pysozu.publishService" -}}
{{- default (printf "%s/%s" (include "pysozu.namespace" .) (include "pysozu.fullname" .)) .Values.publishService.pathOverride }}
{{- end }}

{{/* The Secret holding the admission webhook's certificate (tls.crt, tls.key). */}}
{{- define "pysozu.webhookSecret" -}}
{{- .Values.webhook.secretName | default (printf "%s-webhook-tls" (include "pysozu.fullname" .)) }}
{{- end }}
{{- define "pysozu.webhookDir" -}}/etc/pysozu-webhook{{- end }}

{{/* Render-time checks of rules the schema cannot express across keys. */}}
{{- define "pysozu.validate" -}}
{{- $drain := add .Values.drain.lbDeregistrationSeconds .Values.drain.timeoutSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed drain.lbDeregistrationSeconds + drain.timeoutSeconds (%v)" .Values.terminationGracePeriodSeconds $drain) }}
{{- end }}
{{- if not .Values.image.repository }}
{{- fail "image.repository is required: no official pysozu image is published yet. Build it from the repository's Dockerfile, push it to a registry your cluster pulls from (docker build -t REGISTRY/pysozu:VERSION . && docker push REGISTRY/pysozu:VERSION), then set image.repository=REGISTRY/pysozu (charts/pysozu/README.md)" }}
{{- end }}
{{- if and .Values.hostNetwork (lt (int (min .Values.ports.http .Values.ports.https)) 1024) }}
{{- fail (printf "hostNetwork with ports.http=%v / ports.https=%v: the proxy runs as uid 10001 without capabilities and cannot bind ports below 1024 on the node. Keep ports of 1024 and above (an external load balancer maps 80/443 onto them), or use hostPort.enabled=true without hostNetwork to publish the node's ports 80 and 443" .Values.ports.http .Values.ports.https) }}
{{- end }}
{{- include "pysozu.validateExtraListeners" . }}
{{- if and .Values.hostNetwork .Values.hostPort.enabled }}
{{- fail "hostNetwork and hostPort.enabled are exclusive: with hostNetwork the listeners already bind the node's ports" }}
{{- end }}
{{- if and (eq .Values.kind "DaemonSet") .Values.autoscaling.enabled }}
{{- fail "autoscaling applies to kind Deployment only" }}
{{- end }}
{{- if and (eq .Values.rbac.scope "namespace") (not .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespace needs watchNamespaces: the controller watching every namespace needs the ClusterRole (rbac.scope=cluster)" }}
{{- end }}
{{- if and .Values.webhook.enabled .Values.webhook.secretName .Values.webhook.certManager.enabled }}
{{- fail "webhook.secretName and webhook.certManager.enabled are exclusive: cert-manager writes the chart's own Secret" }}
{{- end }}
{{- if and .Values.webhook.enabled .Values.webhook.secretName (not .Values.webhook.caBundle) }}
{{- fail "webhook.secretName needs webhook.caBundle: the base64 PEM of the CA that signed the Secret's certificate, which the API server must trust" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled (the ServiceMonitor scrapes the metrics Service)" }}
{{- end }}
{{- end }}

{{/* extraListeners: what the schema cannot say across entries and other values. */}}
{{- define "pysozu.validateExtraListeners" -}}
{{- $names := dict "http" "ports.http" "https" "ports.https" "metrics" "ports.metrics" "health" "ports.health" "webhook" "ports.webhook" "controller-metrics" "the metrics Service" }}
{{- $ports := dict }}
{{- range $key := concat (list "http" "https" "metrics" "health") (ternary (list "webhook") list $.Values.webhook.enabled) }}
{{- $_ := set $ports (toString (index $.Values.ports $key)) (printf "ports.%s" $key) }}
{{- end }}
{{- $servicePorts := dict (printf "%v/TCP" $.Values.service.ports.http) "service.ports.http" (printf "%v/TCP" $.Values.service.ports.https) "service.ports.https" }}
{{- $hostPorts := dict }}
{{- if $.Values.hostPort.enabled }}
{{- $hostPorts = dict (printf "%v/TCP" $.Values.hostPort.ports.http) "hostPort.ports.http" (printf "%v/TCP" $.Values.hostPort.ports.https) "hostPort.ports.https" }}
{{- end }}
{{- range $i, $l := .Values.extraListeners }}
{{- $where := printf "extraListeners[%d] (%s)" $i $l.name }}
{{- if hasKey $names $l.name }}
{{- fail (printf "%s: the port name %s is taken by %s; choose another" $where $l.name (index $names $l.name)) }}
{{- end }}
{{- $_ := set $names $l.name (printf "extraListeners[%d]" $i) }}
{{- $port := toString (int $l.containerPort) }}
{{- if hasKey $ports $port }}
{{- fail (printf "%s: containerPort %s is already used by %s (pysozu listeners never share a port, even a TCP and a UDP one)" $where $port (index $ports $port)) }}
{{- end }}
{{- $_ := set $ports $port (printf "extraListeners[%d]" $i) }}
{{- if eq $l.protocol "UDP" }}
{{- range $key := list "expectProxy" "connectTimeout" }}
{{- if hasKey $l $key }}
{{- fail (printf "%s: %s applies to TCP listeners only (no PROXY header, no connect on UDP)" $where $key) }}
{{- end }}
{{- end }}
{{- else }}
{{- range $key := list "maxFlows" "maxRxDatagramSize" }}
{{- if hasKey $l $key }}
{{- fail (printf "%s: %s applies to UDP listeners only" $where $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $.Values.hostNetwork (lt (int $l.containerPort) 1024) }}
{{- fail (printf "%s: hostNetwork with containerPort %v: the proxy runs as uid 10001 without capabilities and cannot bind ports below 1024 on the node. Use a port of 1024 and above (an external load balancer maps the public port onto it), or hostPort without hostNetwork" $where $l.containerPort) }}
{{- end }}
{{- if hasKey $l "hostPort" }}
{{- if $.Values.hostNetwork }}
{{- fail (printf "%s: hostPort and hostNetwork are exclusive: with hostNetwork the listener already binds the node's port %v" $where $l.containerPort) }}
{{- end }}
{{- $key := printf "%v/%s" (int $l.hostPort) $l.protocol }}
{{- if hasKey $hostPorts $key }}
{{- fail (printf "%s: hostPort %s is already used by %s" $where $key (index $hostPorts $key)) }}
{{- end }}
{{- $_ := set $hostPorts $key (printf "extraListeners[%d]" $i) }}
{{- end }}
{{- $key := printf "%v/%s" (int ($l.servicePort | default $l.containerPort)) $l.protocol }}
{{- if hasKey $servicePorts $key }}
{{- fail (printf "%s: Service port %s is already used by %s; set servicePort" $where $key (index $servicePorts $key)) }}
{{- end }}
{{- $_ := set $servicePorts $key (printf "extraListeners[%d]" $i) }}
{{- end }}
{{- end }}
