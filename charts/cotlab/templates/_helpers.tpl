{{/* Labels on every object: what kustomize's `labels` adds in manifests/install, plus commonLabels. */}}
{{- define "cotlab.labels" -}}
app.kubernetes.io/part-of: cotlab
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An image reference: repository@digest when a digest is set, else repository:tag. */}}
{{- define "cotlab.image" -}}
{{- if .digest -}}
{{ .repository }}@{{ .digest }}
{{- else -}}
{{ .repository }}:{{ .tag }}
{{- end -}}
{{- end -}}

{{/* The operator's permissions, as data (manifests/install/clusterrole.yaml, which
tests/unit/test_install_manifests.py derives from the code's requests, says why each is there). rbac.yaml puts
them all in the ClusterRole, or, with watchNamespaces, the namespaced ones in a Role per watched namespace and only
the CustomResourceDefinition rule (cluster-scoped) in the ClusterRole. */}}
{{- define "cotlab.rules" -}}
rules:
  # The three resources: the informers list and watch them; reconciles patch their status.
  - apiGroups: [cotlab.dev]
    resources: [tracedatasets, finetuneruns, evalruns]
    verbs: [list, watch]
  - apiGroups: [cotlab.dev]
    resources: [tracedatasets/status, finetuneruns/status, evalruns/status]
    verbs: [patch]
  # Not a request: ownerReferences with blockOwnerDeletion need update on the owner's finalizers where the
  # OwnerReferencesPermissionEnforcement admission plugin is on.
  - apiGroups: [cotlab.dev]
    resources: [tracedatasets/finalizers, finetuneruns/finalizers, evalruns/finalizers]
    verbs: [update]
  # Children: Jobs, spec ConfigMaps, rendezvous Services (informers on the operator's label; get when a name is
  # taken; patch on jobs for spec.suspend).
  - apiGroups: [batch]
    resources: [jobs]
    verbs: [list, watch, get, create, patch]
  - apiGroups: [""]
    resources: [configmaps, services]
    verbs: [list, watch, get, create]
  # Progress markers and failure reasons come from the pods' logs and termination messages.
  - apiGroups: [""]
    resources: [pods]
    verbs: [list, watch]
  - apiGroups: [""]
    resources: [pods/log]
    verbs: [get]
  # Kueue: Workloads watched, patched (spec.active) to suspend a queued run; its CRD says whether Kueue is there.
  - apiGroups: [kueue.x-k8s.io]
    resources: [workloads]
    verbs: [list, watch, patch]
  - apiGroups: [apiextensions.k8s.io]
    resources: [customresourcedefinitions]
    resourceNames: [workloads.kueue.x-k8s.io]
    verbs: [get]
  # One core/v1 Event per phase transition.
  - apiGroups: [""]
    resources: [events]
    verbs: [create]
{{- end -}}

{{/* A setting's value in the settings ConfigMap: lists comma-joined, numbers as text. */}}
{{- define "cotlab.setting" -}}
{{- if kindIs "slice" . -}}
{{ join "," . }}
{{- else -}}
{{ toString . }}
{{- end -}}
{{- end -}}
