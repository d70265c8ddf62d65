{{/* The release's name for everything, kubetrail when the release is. */}}
{{- define "kubetrail.fullname" -}}
{{- if contains "kubetrail" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-kubetrail" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "kubetrail.selectorLabels" -}}
app.kubernetes.io/name: kubetrail
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubetrail.labels" -}}
{{ include "kubetrail.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubetrail.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "kubetrail.fullname" .) .Values.serviceAccount.name }}
{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "kubetrail.leaderElection" -}}
{{- if gt (int .Values.replicas) 1 -}}true{{- end -}}
{{- end -}}

{{- define "kubetrail.secretName" -}}
{{- if .Values.existingSecret -}}{{ .Values.existingSecret }}
{{- else if .Values.secretEnv -}}{{ include "kubetrail.fullname" . }}-secrets{{- end -}}
{{- end -}}

{{/*
Built-in resources by every name kubetrail resolves them by (plural,
singular, short names): "GROUP|PLURAL|SCOPE". The chart has no discovery;
a custom resource must be written plural.group, "*.GROUP" grants the group.
*/}}
{{- define "kubetrail.builtinResources" -}}
{{- $t := dict -}}
{{- range list
  "|pods|n|pod,po" "|services|n|service,svc" "|configmaps|n|configmap,cm" "|secrets|n|secret"
  "|namespaces|c|namespace,ns" "|nodes|c|node,no" "|persistentvolumeclaims|n|persistentvolumeclaim,pvc"
  "|persistentvolumes|c|persistentvolume,pv" "|serviceaccounts|n|serviceaccount,sa" "|endpoints|n|endpoint,ep"
  "|events|n|event,ev" "|replicationcontrollers|n|replicationcontroller,rc" "|resourcequotas|n|resourcequota,quota"
  "|limitranges|n|limitrange,limits"
  "apps|deployments|n|deployment,deploy" "apps|statefulsets|n|statefulset,sts" "apps|daemonsets|n|daemonset,ds"
  "apps|replicasets|n|replicaset,rs" "apps|controllerrevisions|n|controllerrevision"
  "batch|jobs|n|job" "batch|cronjobs|n|cronjob,cj"
  "networking.k8s.io|ingresses|n|ingress,ing" "networking.k8s.io|networkpolicies|n|networkpolicy,netpol"
  "networking.k8s.io|ingressclasses|c|ingressclass"
  "rbac.authorization.k8s.io|roles|n|role" "rbac.authorization.k8s.io|rolebindings|n|rolebinding"
  "rbac.authorization.k8s.io|clusterroles|c|clusterrole" "rbac.authorization.k8s.io|clusterrolebindings|c|clusterrolebinding"
  "policy|poddisruptionbudgets|n|poddisruptionbudget,pdb"
  "autoscaling|horizontalpodautoscalers|n|horizontalpodautoscaler,hpa"
  "storage.k8s.io|storageclasses|c|storageclass,sc"
  "apiextensions.k8s.io|customresourcedefinitions|c|customresourcedefinition,crd,crds"
  "coordination.k8s.io|leases|n|lease" -}}
{{- $f := splitList "|" . -}}
{{- $entry := printf "%s|%s|%s" (index $f 0) (index $f 1) (index $f 2) -}}
{{- $_ := set $t (index $f 1) $entry -}}
{{- range splitList "," (index $f 3) -}}{{- $_ := set $t . $entry -}}{{- end -}}
{{- end -}}
{{- toYaml $t -}}
{{- end -}}

{{/*
The RBAC rules for config.watch.resources: {"namespaced": {GROUP: [PLURAL]},
"cluster": {GROUP: [PLURAL]}} as YAML.
*/}}
{{- define "kubetrail.watchRules" -}}
{{- $table := include "kubetrail.builtinResources" . | fromYaml -}}
{{- $namespaced := dict -}}
{{- $cluster := dict -}}
{{- range .Values.config.watch.resources -}}
{{- $name := lower . -}}
{{- $group := "" -}}{{- $plural := "" -}}{{- $scope := "n" -}}
{{- if hasKey $table $name -}}
{{- $f := splitList "|" (get $table $name) -}}
{{- $group = index $f 0 -}}{{- $plural = index $f 1 -}}{{- $scope = index $f 2 -}}
{{- else if hasPrefix "*." $name -}}
{{- $group = trimPrefix "*." $name -}}{{- $plural = "*" -}}
{{- else if contains "." $name -}}
{{- $parts := splitn "." 2 $name -}}
{{- $plural = $parts._0 -}}{{- $group = $parts._1 -}}
{{- else -}}
{{- fail (printf "config.watch.resources: %q is not a built-in name the chart knows: write it as plural.group (e.g. widgets.example.com), or grant it with rbac.extraRules" .) -}}
{{- end -}}
{{- $into := ternary $cluster $namespaced (eq $scope "c") -}}
{{- $_ := set $into $group (append (get $into $group | default list) $plural | uniq) -}}
{{- end -}}
{{- toYaml (dict "namespaced" $namespaced "cluster" $cluster) -}}
{{- end -}}

{{- define "kubetrail.rules" -}}
{{- range $group := keys . | sortAlpha }}
- apiGroups: [{{ $group | quote }}]
  resources: [{{ range $i, $r := get $ $group }}{{ if $i }}, {{ end }}{{ $r | quote }}{{ end }}]
  verbs: ["list", "watch"]
{{- end -}}
{{- end -}}
