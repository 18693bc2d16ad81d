{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "poolgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-poolgate", or the release name when it already contains the chart name. Kept to
47 characters so that "-gateway-admin" and the other suffixes stay within 63. */}}
{{- define "poolgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "poolgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "poolgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "poolgate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "poolgate.labels" -}}
helm.sh/chart: {{ include "poolgate.chart" .ctx }}
{{ include "poolgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: poolgate
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "poolgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Gateway ---------------------------------------------------------------------------------- */}}

{{- define "poolgate.gateway.name" -}}
{{- printf "%s-gateway" (include "poolgate.fullname" .) }}
{{- end }}

{{- define "poolgate.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "poolgate.gateway.name" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- required "gateway.serviceAccount.name is required when gateway.serviceAccount.create is false" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "poolgate.gateway.leaseName" -}}
{{- default (include "poolgate.gateway.name" .) .Values.gateway.leaseName }}
{{- end }}

{{- define "poolgate.gateway.terminationGracePeriodSeconds" -}}
{{- include "poolgate.terminationGracePeriodSeconds" (dict "values" .Values.gateway "key" "gateway") }}
{{- end }}

{{/* The pod's terminationGracePeriodSeconds: the value, which must exceed preStop sleep + drain,
or sleep + drain + 10 when unset. Call with (dict "values" .Values.<key> "key" "<key>"). */}}
{{- define "poolgate.terminationGracePeriodSeconds" -}}
{{- $v := .values }}
{{- $floor := add $v.preStopSleepSeconds $v.drainSeconds }}
{{- if kindIs "invalid" $v.terminationGracePeriodSeconds }}
{{- add $floor 10 }}
{{- else if le (int $v.terminationGracePeriodSeconds) (int $floor) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must exceed %s.preStopSleepSeconds + %s.drainSeconds (%v), or requests in flight are killed" .key $v.terminationGracePeriodSeconds .key .key $floor) }}
{{- else }}
{{- $v.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
RBAC rules of what `--source kubernetes` reads, generated from one table so that the ClusterRole
(all namespaces), the per-namespace Roles (watchNamespaces) and the GatewayClass-only ClusterRole
cannot disagree, for the gateway and the endpoint picker alike. It mirrors
poolgate.kube.resources: WATCHED (+ pods) get/list/watch, and with "status" (the gateway, not
the picker) STATUS_WRITTEN /status get/update/patch; tests/deploy computes the expected rules
from that module.
Call with (dict "scope" "all" | "namespaced" | "cluster" "status" true | false).
*/}}
{{- define "poolgate.sourceRules" -}}
{{- $table := list
  (dict "group" "gateway.networking.k8s.io" "watched" (list "gatewayclasses") "status" (list "gatewayclasses") "cluster" true)
  (dict "group" "gateway.networking.k8s.io" "watched" (list "gateways" "httproutes" "referencegrants") "status" (list "gateways" "httproutes"))
  (dict "group" "inference.networking.k8s.io" "watched" (list "inferencepools") "status" (list "inferencepools"))
  (dict "group" "inference.networking.x-k8s.io" "watched" (list "inferencepools" "inferencemodels" "inferenceobjectives") "status" (list "inferencepools"))
  (dict "group" "gateway.envoyproxy.io" "watched" (list "backendtrafficpolicies" "clienttrafficpolicies" "securitypolicies" "envoyproxies"))
  (dict "group" "networking.gke.io" "watched" (list "gcpbackendpolicies" "healthcheckpolicies"))
  (dict "group" "autoscaling.gke.io" "watched" (list "autoscalingmetrics"))
  (dict "group" "" "watched" (list "secrets" "configmaps" "pods"))
}}
{{- range $row := $table }}
{{- $wanted := or (eq $.scope "all") (and (eq $.scope "cluster") $row.cluster) (and (eq $.scope "namespaced") (not $row.cluster)) }}
{{- if $wanted }}
- apiGroups: [{{ $row.group | quote }}]
  resources: [{{ join ", " $row.watched }}]
  verbs: [get, list, watch]
{{- if and $.status $row.status }}
- apiGroups: [{{ $row.group | quote }}]
  resources: [{{ range $i, $r := $row.status }}{{ if $i }}, {{ end }}{{ $r }}/status{{ end }}]
  verbs: [get, update, patch]
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Operator --------------------------------------------------------------------------------- */}}

{{- define "poolgate.operator.name" -}}
{{- printf "%s-operator" (include "poolgate.fullname" .) }}
{{- end }}

{{- define "poolgate.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "poolgate.operator.name" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* What `poolgate operator` reads and writes (as deploy/operator/operator.yaml). */}}
{{- define "poolgate.operator.rules" -}}
- apiGroups: [poolgate.dev]
  resources: [inferenceservices]
  verbs: [get, list, watch]
- apiGroups: [poolgate.dev]
  resources: [inferenceservices/status]
  verbs: [get, patch, update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, update]
{{- end }}

{{/* Leader election: a coordination.k8s.io/v1 Lease read, created and renewed (operator, gateway). */}}
{{- define "poolgate.leaseRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end }}

{{/* Endpoint picker ---------------------------------------------------------------------------- */}}

{{/* "<fullname>-epp": the Deployment and the Service an InferencePool's endpointPickerRef names. */}}
{{- define "poolgate.epp.name" -}}
{{- printf "%s-epp" (include "poolgate.fullname" .) }}
{{- end }}

{{- define "poolgate.epp.serviceAccountName" -}}
{{- if .Values.epp.serviceAccount.create }}
{{- default (include "poolgate.epp.name" .) .Values.epp.serviceAccount.name }}
{{- else }}
{{- required "epp.serviceAccount.name is required when epp.serviceAccount.create is false" .Values.epp.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespaces the picker watches, as JSON: [] (every namespace), or the release namespace
followed by epp.watchNamespaces: the pools that name the picker's Service are in the release
namespace (an endpointPickerRef has no namespace), so it is always watched. */}}
{{- define "poolgate.epp.namespaces" -}}
{{- if .Values.epp.watchNamespaces }}
{{- prepend .Values.epp.watchNamespaces .Release.Namespace | uniq | toJson }}
{{- else }}
{{- list | toJson }}
{{- end }}
{{- end }}

{{/* The picker's gRPC port (--grpc-port, the container port "grpc", the Service port and the
gRPC probes): 9002, as the Inference Extension's EPP, so endpointPickerRef port 9002. */}}
{{- define "poolgate.epp.grpcPort" -}}
9002
{{- end }}

{{/* Router and Redis ------------------------------------------------------------------------- */}}

{{- define "poolgate.router.name" -}}
{{- printf "%s-router" (include "poolgate.fullname" .) }}
{{- end }}

{{- define "poolgate.redis.name" -}}
{{- printf "%s-redis" (include "poolgate.fullname" .) }}
{{- end }}
