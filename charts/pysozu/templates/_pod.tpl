{{/*
The pod template shared by the Deployment and the DaemonSet: the proxy and the ingress
controller, joined by the command socket in the "run" emptyDir.
*/}}
{{- define "pysozu.podTemplate" -}}
metadata:
  labels:
    {{- include "pysozu.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "pysozu.configToml" . | sha256sum }}
    {{- if and .Values.metrics.enabled .Values.metrics.scrapeAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ .Values.ports.metrics | quote }}
    prometheus.io/path: /metrics
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "pysozu.serviceAccountName" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.hostNetwork }}
  hostNetwork: true
  {{- end }}
  {{- if or .Values.dnsPolicy .Values.hostNetwork }}
  dnsPolicy: {{ default "ClusterFirstWithHostNet" .Values.dnsPolicy }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
    {{- with include "pysozu.unprivilegedPortStart" . }}
    # Listener ports below 1024 in the pod's own network, without any capability.
    sysctls:
      - name: net.ipv4.ip_unprivileged_port_start
        value: {{ . | quote }}
    {{- end }}
  {{- with .Values.initContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: pysozu
      image: {{ include "pysozu.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - pysozu
        - start
        - -c
        - {{ include "pysozu.configFile" . }}
        {{- range .Values.proxy.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- with .Values.proxy.extraEnv }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.ports.http }}
          {{- if .Values.hostPort.enabled }}
          hostPort: {{ .Values.hostPort.ports.http }}
          {{- end }}
          protocol: TCP
        - name: https
          containerPort: {{ .Values.ports.https }}
          {{- if .Values.hostPort.enabled }}
          hostPort: {{ .Values.hostPort.ports.https }}
          {{- end }}
          protocol: TCP
        {{- range .Values.extraListeners }}
        - name: {{ .name }}
          containerPort: {{ int .containerPort }}
          {{- with .hostPort }}
          hostPort: {{ int . }}
          {{- end }}
          protocol: {{ .protocol }}
        {{- end }}
        - name: metrics
          containerPort: {{ .Values.ports.metrics }}
          protocol: TCP
      # `pysozu status` answers once the main process and its workers are up.
      # HTTP GETs on main's metrics port (no Python process per probe): /healthz = main
      # answers and a worker runs; /readyz = every worker runs, a listener is active, no stop.
      startupProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: 2
        timeoutSeconds: 5
        failureThreshold: 30
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      lifecycle:
        # Keep serving while endpoints are withdrawn, then soft-stop (listeners close,
        # in-flight requests finish) and wait for it up to the drain timeout. SIGTERM, sent
        # after this hook, soft-stops too; the grace period bounds everything.
        preStop:
          exec:
            command:
              - /bin/sh
              - -c
              - sleep {{ .Values.drain.lbDeregistrationSeconds }}; exec pysozu -c {{ include "pysozu.configFile" . }} -t {{ mul .Values.drain.timeoutSeconds 1000 }} shutdown
      resources:
        {{- toYaml .Values.proxy.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: run
          mountPath: {{ include "pysozu.runDir" . }}
        - name: tmp
          mountPath: /tmp
        - name: config
          mountPath: {{ include "pysozu.configDir" . }}
          readOnly: true
        {{- if .Values.defaultTLSCertificate.secretName }}
        - name: default-tls
          mountPath: {{ include "pysozu.defaultTlsDir" . }}
          readOnly: true
        {{- end }}
        {{- with .Values.proxy.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    - name: pysozu-ingress
      image: {{ include "pysozu.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - pysozu-ingress
        - --command-socket={{ include "pysozu.commandSocket" . }}
        - --controller-name={{ .Values.ingressClass.controllerName }}
        - --ingress-class={{ .Values.ingressClass.name }}
        {{- if .Values.ingressClass.byName }}
        - --ingress-class-name={{ .Values.ingressClass.name }}
        {{- end }}
        {{- if .Values.watchIngressWithoutClass }}
        - --watch-ingress-without-class
        {{- end }}
        {{- range .Values.watchNamespaces }}
        - --namespace={{ . }}
        {{- end }}
        - --http-address=0.0.0.0:{{ .Values.ports.http }}
        - --https-address=0.0.0.0:{{ .Values.ports.https }}
        {{- if .Values.publishAddress }}
        - --publish-address={{ .Values.publishAddress }}
        {{- else if .Values.publishService.enabled }}
        - --publish-service={{ include "pysozu.publishService" . }}
        {{- end }}
        - --health-address=0.0.0.0:{{ .Values.ports.health }}
        - --election-id={{ include "pysozu.leaseName" . }}
        {{- if .Values.webhook.enabled }}
        - --webhook-address=0.0.0.0:{{ .Values.ports.webhook }}
        - --webhook-cert-file={{ include "pysozu.webhookDir" . }}/tls.crt
        - --webhook-key-file={{ include "pysozu.webhookDir" . }}/tls.key
        {{- if .Values.webhook.requireTlsSecrets }}
        - --webhook-require-tls-secrets
        {{- end }}
        {{- end }}
        {{- if .Values.nginxAnnotations }}
        - --nginx-annotations
        {{- end }}
        {{- range .Values.controller.extraArgs }}
        - {{ . }}
        {{- end }}
      env:
        # The leader-election Lease lives in the pod's namespace, where the Role allows it.
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        {{- with .Values.controller.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: health
          containerPort: {{ .Values.ports.health }}
          protocol: TCP
        {{- if .Values.webhook.enabled }}
        - name: webhook
          containerPort: {{ .Values.ports.webhook }}
          protocol: TCP
        {{- end }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: health
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      livenessProbe:
        httpGet:
          path: /healthz
          port: health
        periodSeconds: 20
        timeoutSeconds: 3
        failureThreshold: 3
      resources:
        {{- toYaml .Values.controller.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: run
          mountPath: {{ include "pysozu.runDir" . }}
        - name: tmp
          mountPath: /tmp
        {{- if .Values.webhook.enabled }}
        - name: webhook-tls
          mountPath: {{ include "pysozu.webhookDir" . }}
          readOnly: true
        {{- end }}
        {{- with .Values.controller.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- with .Values.extraContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumes:
    # The command socket (mode 0600, hence one uid for both containers) and runtime state.
    - name: run
      emptyDir:
        medium: Memory
        sizeLimit: 16Mi
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    - name: config
      configMap:
        name: {{ include "pysozu.fullname" . }}
    {{- with .Values.defaultTLSCertificate.secretName }}
    - name: default-tls
      secret:
        secretName: {{ . }}
    {{- end }}
    {{- if .Values.webhook.enabled }}
    - name: webhook-tls
      secret:
        secretName: {{ include "pysozu.webhookSecret" . }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
