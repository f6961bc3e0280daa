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

{{/* The operator's namespaced permissions (see clusterrole.yaml for why each is there). */}}
{{- define "cotlab.namespacedRules" -}}
# The three resources: watch them, write their status.
- apiGroups: [cotlab.dev]
  resources: [tracedatasets, finetuneruns, evalruns]
  verbs: [get, list, watch, patch]
- apiGroups: [cotlab.dev]
  resources: [tracedatasets/status, finetuneruns/status, evalruns/status]
  verbs: [get, patch, update]
# Children carry ownerReferences with blockOwnerDeletion; where the OwnerReferencesPermissionEnforcement
# admission plugin is on, setting it needs update on the owner's finalizers subresource.
- apiGroups: [cotlab.dev]
  resources: [tracedatasets/finalizers, finetuneruns/finalizers, evalruns/finalizers]
  verbs: [update]
# Children: one Job per stage, its spec ConfigMap, and the rendezvous Service of multi-node runs.
# patch on jobs is for spec.suspend, which the operator mirrors from the resource.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create]
# Progress markers and failure reasons come from the pods' logs and termination messages.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# Kueue: a queued run's status mirrors its Workload (get/list); spec.suspend on a queued run deactivates the
# Workload (patch spec.active). Nothing else of Kueue's is read or written.
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [get, list, patch]
# Events on transitions (kopf posts core/v1 events).
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Cluster-wide in every case: kopf discovers CRDs at run time (and notices when they are added or removed). */}}
{{- define "cotlab.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end -}}
