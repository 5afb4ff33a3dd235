{{- define "garpd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "garpd.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "garpd.labels" -}}
{{ include "garpd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "garpd.serviceAccountName" -}}
{{- default (include "garpd.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "garpd.keySecret" -}}
{{- default (printf "%s-gossip-key" (include "garpd.fullname" .)) .Values.gossip.key.existingSecret -}}
{{- end -}}

{{/* The gossip key Secret's data: as the cluster holds it; a new key when
the chart makes the Secret and the cluster has none yet (install); empty
when the chart cannot see the cluster (helm template), so that no random
key is rendered to split a running cluster. Kept in .Values for the rest of
the render, so the Secret and the pods' checksum see the same key. */}}
{{- define "garpd.gossipKeyData" -}}
{{- if not (hasKey .Values.gossip.key "rendered") -}}
{{- $data := "" -}}
{{- $old := lookup "v1" "Secret" .Release.Namespace (include "garpd.keySecret" .) -}}
{{- if and $old $old.data (index $old.data "key") -}}
{{- $data = index $old.data "key" -}}
{{- else if and (not .Values.gossip.key.existingSecret) (lookup "v1" "Namespace" "" "kube-system") -}}
{{- $data = randBytes 32 | b64enc -}}
{{- end -}}
{{- $_ := set .Values.gossip.key "rendered" $data -}}
{{- end -}}
{{- .Values.gossip.key.rendered -}}
{{- end -}}

{{/* The health checks: the presets asked for, then the listed ones. A
preset is a name, or {name, interval, timeout, fall, rise, weight, vips}
with its own timings (the kubelet every 3s × 10, the service every 2s × 2). */}}
{{- define "garpd.checks" -}}
{{- $h := .Values.healthChecks -}}
{{- $urls := dict "ingress" $h.ingressURL "kubelet" "http://127.0.0.1:10248/healthz" "apiserver" "https://127.0.0.1:6443/readyz" "openshift-router" "http://127.0.0.1:1936/healthz/ready" -}}
{{- $checks := list -}}
{{- range $h.presets -}}
{{- $p := . -}}
{{- if kindIs "string" . -}}{{- $p = dict "name" . -}}{{- end -}}
{{- if not (hasKey $urls $p.name) -}}
{{- fail (printf "healthChecks.presets: %q is not a preset: use ingress, kubelet, apiserver or openshift-router" $p.name) -}}
{{- end -}}
{{- $c := dict "name" $p.name "http" (get $urls $p.name) "interval" ($p.interval | default $h.interval) "timeout" ($p.timeout | default $h.timeout) "fall" ($p.fall | default $h.fall) "rise" ($p.rise | default $h.rise) -}}
{{- range $k := list "weight" "vips" -}}{{- if hasKey $p $k -}}{{- $_ := set $c $k (get $p $k) -}}{{- end -}}{{- end -}}
{{- if eq $p.name "apiserver" -}}{{- $_ := set $c "insecure" true -}}{{- end -}}
{{- $checks = append $checks $c -}}
{{- end -}}
{{- concat $checks $h.checks | toYaml -}}
{{- end -}}

{{/* The address the liveness probe reaches http.listen on: its host
without brackets, a wildcard as the loopback address of its family
(":9496" and "0.0.0.0:9496" as 127.0.0.1, "[::]:9496" as ::1). */}}
{{- define "garpd.probeHost" -}}
{{- $host := regexReplaceAll ":[0-9]+$" .Values.http.listen "" | trimPrefix "[" | trimSuffix "]" -}}
{{- if or (eq $host "") (eq $host "0.0.0.0") -}}127.0.0.1
{{- else if eq $host "::" -}}::1
{{- else -}}{{ $host }}
{{- end -}}
{{- end }}
