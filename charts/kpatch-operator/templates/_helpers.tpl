{{/* Common labels of every object of the release. */}}
{{- define "kpatch-operator.labels" -}}
app.kubernetes.io/part-of: kpatch-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* Selector labels of the operator pods (stable across upgrades). */}}
{{- define "kpatch-operator.selectorLabels" -}}
app.kubernetes.io/name: kpatch-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Name prefix of the release's cluster-scoped objects (ClusterRoles, bindings, admission policy): they
must not collide between releases in different namespaces.
*/}}
{{- define "kpatch-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Name .Release.Namespace | trunc 56 | trimSuffix "-" -}}
{{- end -}}

{{- define "kpatch-operator.image" -}}
{{- printf "%s:%s" .repository (default .appVersion .tag) -}}
{{- end -}}

{{/* The user name the API server gives the agent's ServiceAccount tokens. */}}
{{- define "kpatch-operator.agentUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace .Values.agent.serviceAccount.name -}}
{{- end -}}
