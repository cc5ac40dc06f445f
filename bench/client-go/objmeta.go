package main

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Obj implements metav1.Object, as every Kubernetes object does, so that client-go takes its
// usual paths: MetaNamespaceKeyFunc for keys, and the indexer's read of the resource version
// on every write (which, for an object without metadata, builds an error each time). The
// fields the workload does not have read as empty.
var _ metav1.Object = (*Obj)(nil)

// GetNamespace implements metav1.Object.
func (o *Obj) GetNamespace() string { return o.Namespace }

// SetNamespace implements metav1.Object.
func (o *Obj) SetNamespace(v string) { o.Namespace = v }

// GetName implements metav1.Object.
func (o *Obj) GetName() string { return o.Name }

// SetName implements metav1.Object.
func (o *Obj) SetName(v string) { o.Name = v }

// GetGenerateName implements metav1.Object.
func (o *Obj) GetGenerateName() string { return "" }

// SetGenerateName implements metav1.Object.
func (o *Obj) SetGenerateName(string) {}

// GetUID implements metav1.Object.
func (o *Obj) GetUID() types.UID { return "" }

// SetUID implements metav1.Object.
func (o *Obj) SetUID(types.UID) {}

// GetResourceVersion implements metav1.Object.
func (o *Obj) GetResourceVersion() string { return o.RV }

// SetResourceVersion implements metav1.Object.
func (o *Obj) SetResourceVersion(v string) { o.RV = v }

// GetGeneration implements metav1.Object.
func (o *Obj) GetGeneration() int64 { return 0 }

// SetGeneration implements metav1.Object.
func (o *Obj) SetGeneration(int64) {}

// GetSelfLink implements metav1.Object.
func (o *Obj) GetSelfLink() string { return "" }

// SetSelfLink implements metav1.Object.
func (o *Obj) SetSelfLink(string) {}

// GetCreationTimestamp implements metav1.Object.
func (o *Obj) GetCreationTimestamp() metav1.Time { return metav1.Time{} }

// SetCreationTimestamp implements metav1.Object.
func (o *Obj) SetCreationTimestamp(metav1.Time) {}

// GetDeletionTimestamp implements metav1.Object.
func (o *Obj) GetDeletionTimestamp() *metav1.Time { return nil }

// SetDeletionTimestamp implements metav1.Object.
func (o *Obj) SetDeletionTimestamp(*metav1.Time) {}

// GetDeletionGracePeriodSeconds implements metav1.Object.
func (o *Obj) GetDeletionGracePeriodSeconds() *int64 { return nil }

// SetDeletionGracePeriodSeconds implements metav1.Object.
func (o *Obj) SetDeletionGracePeriodSeconds(*int64) {}

// GetLabels implements metav1.Object.
func (o *Obj) GetLabels() map[string]string {
	m := make(map[string]string, len(o.Labels))
	for _, l := range o.Labels {
		m[l.Key] = l.Value
	}
	return m
}

// SetLabels implements metav1.Object.
func (o *Obj) SetLabels(m map[string]string) {
	o.Labels = o.Labels[:0]
	for k, v := range m {
		o.Labels = append(o.Labels, Label{k, v})
	}
}

// GetAnnotations implements metav1.Object.
func (o *Obj) GetAnnotations() map[string]string { return nil }

// SetAnnotations implements metav1.Object.
func (o *Obj) SetAnnotations(map[string]string) {}

// GetFinalizers implements metav1.Object.
func (o *Obj) GetFinalizers() []string { return nil }

// SetFinalizers implements metav1.Object.
func (o *Obj) SetFinalizers([]string) {}

// GetOwnerReferences implements metav1.Object.
func (o *Obj) GetOwnerReferences() []metav1.OwnerReference { return nil }

// SetOwnerReferences implements metav1.Object.
func (o *Obj) SetOwnerReferences([]metav1.OwnerReference) {}

// GetManagedFields implements metav1.Object.
func (o *Obj) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }

// SetManagedFields implements metav1.Object.
func (o *Obj) SetManagedFields([]metav1.ManagedFieldsEntry) {}
