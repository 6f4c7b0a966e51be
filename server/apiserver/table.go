package apiserver

import (
	"encoding/json"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/server/registry"
)

// defaultColumns is what Kubernetes' default table convertor shows for a
// resource without printers.
var defaultColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
	{Name: "Created At", Type: "date", Description: "CreationTimestamp is a timestamp representing the server time when this object was created."},
}

// parseIncludeObject reads what each row of a Table carries.
func parseIncludeObject(r *http.Request) (metav1.IncludeObjectPolicy, error) {
	switch v := r.URL.Query().Get("includeObject"); v {
	case "", "Metadata":
		return metav1.IncludeMetadata, nil
	case "None":
		return metav1.IncludeNone, nil
	case "Object":
		return metav1.IncludeObject, nil
	}
	return "", apierrors.NewBadRequest("includeObject must be one of None, Metadata, Object")
}

// defaultRow is the row of Kubernetes' default table convertor.
func defaultRow(name string, created metav1.Time) []interface{} {
	return []interface{}{name, created.UTC().Format(time.RFC3339)}
}

// tableColumns are the columns of res's tables.
func tableColumns(res *registry.Resource) []metav1.TableColumnDefinition {
	if res.Row == nil {
		return defaultColumns
	}
	return res.Columns
}

// toTable renders objects as a meta.k8s.io/v1 Table, the way `kubectl get`
// asks for them. includeObject selects what each row carries.
func (s *Server) toTable(r *http.Request, res *registry.Resource, objs []runtime.Object) (*metav1.Table, error) {
	include, err := parseIncludeObject(r)
	if err != nil {
		return nil, err
	}
	table := &metav1.Table{}
	table.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("Table"))
	table.ColumnDefinitions = tableColumns(res)
	table.Rows = make([]metav1.TableRow, 0, len(objs))
	for _, obj := range objs {
		var cells []interface{}
		if res.Row != nil {
			cells = res.Row(obj)
		} else {
			m, _ := meta.Accessor(obj)
			cells = defaultRow(m.GetName(), m.GetCreationTimestamp())
		}
		row := metav1.TableRow{Cells: cells}
		switch include {
		case metav1.IncludeMetadata:
			raw, err := json.Marshal(partialObjectMetadata(obj))
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			row.Object = runtime.RawExtension{Raw: raw}
		case metav1.IncludeObject:
			raw, err := json.Marshal(obj)
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			row.Object = runtime.RawExtension{Raw: raw}
		}
		table.Rows = append(table.Rows, row)
	}
	return table, nil
}
