{{/* Chart name, overridable with nameOverride. */}}
{{- define "conch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else RELEASE-conch (RELEASE alone
when it already contains the chart name). Truncated to 63 characters (DNS label limit).
*/}}
{{- define "conch.fullname" -}}
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

{{- define "conch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "conch.labels" -}}
helm.sh/chart: {{ include "conch.chart" . }}
{{ include "conch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conch
{{- end }}

{{/* Labels that select the operator's pod (immutable once installed). */}}
{{- define "conch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "conch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "conch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: by digest when image.digest is set (a moved tag changes nothing). */}}
{{- define "conch.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Every permission the operator has, the same in a ClusterRole (all namespaces) or in a Role
per watched namespace. Nothing else: no Secrets, ConfigMaps, Nodes, RBAC or CRD writes.
*/}}
{{- define "conch.rules" -}}
# The operator's own resources: watch them, write their status, and own children with
# blockOwnerDeletion (which needs update on modelservices/finalizers).
- apiGroups: ["serving.conch.dev"]
  resources: ["modelservices", "modelversions"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["serving.conch.dev"]
  resources: ["modelservices/status", "modelversions/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["serving.conch.dev"]
  resources: ["modelservices/finalizers"]
  verbs: ["update"]
# Read-only: the grants that let other namespaces serve a team's ModelVersions.
- apiGroups: ["serving.conch.dev"]
  resources: ["modelaccessgrants"]
  verbs: ["get", "list", "watch"]
# What a ModelService becomes.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Secrets, by name only (no list or watch: the operator never sees Secrets it was not
# pointed to). Read: a ModelVersion's credentials Secret's metadata (whether it opted in,
# where its credentials may go); the endpoint gate's Secret of key hashes. Write: the
# endpoint keys of spec.access.consumers, in the ModelService's own namespace, each owned
# by it (a name held by anyone else is refused, never taken over).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch", "delete"]
# Read-only: pod scheduling conditions (InsufficientGPU).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Events about the objects it reconciles.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
