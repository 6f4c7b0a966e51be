package snapshot

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/apiserver"
)

// APIPath is where a running server takes a snapshot on request (POST,
// ?name=NAME): `orch snapshot save` goes there when the server holds the
// store. The server authorizes it like any non-resource URL, so only an
// admin (system:masters, cluster-admin) may.
const APIPath = "/v1-orch/snapshots"

// Handler serves APIPath for the running store db of the server with
// this data directory. It answers 201 Created with the new snapshot's Info.
func Handler(db Snapshotter, dataDir string, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			apiserver.WriteStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "snapshots"}, r.Method))
			return
		}
		name := r.URL.Query().Get("name")
		if name == "" {
			name = DefaultName
		}
		if err := checkName(name); err != nil {
			apiserver.WriteStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		info, err := write(Dir(dataDir), name, now(), db.Snapshot)
		if errors.Is(err, errExists) {
			apiserver.WriteStatus(w, apierrors.NewAlreadyExists(schema.GroupResource{Resource: "snapshots"}, info.Path))
			return
		}
		if err != nil {
			apiserver.WriteStatus(w, apierrors.NewInternalError(err))
			return
		}
		body, err := json.Marshal(info)
		if err != nil {
			apiserver.WriteStatus(w, apierrors.NewInternalError(err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(append(body, '\n'))
	})
}
