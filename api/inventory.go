package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

// inventoryVersion reads a version named by query parameter key (a
// number, a time, or a duration ago, as `inventory show --at` takes);
// 0, the newest, when it is not given. It answers a bad one itself.
func (a *API) inventoryVersion(w http.ResponseWriter, r *http.Request, key string) (int, bool) {
	s := r.URL.Query().Get(key)
	if s == "" {
		return 0, true
	}
	ref, err := overlord.ParseInventoryRef(s, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, status.KindBadArgs, "%s: %v", key, err)
		return 0, false
	}
	v, err := a.o.InventoryResolve(ref)
	if err != nil {
		a.storeError(w, err)
		return 0, false
	}
	return v, true
}

// inventory is GET /v1/inventory?at=: a version of the inventory, the
// newest by default, as `inventory show -o json`.
func (a *API) inventory(w http.ResponseWriter, r *http.Request) {
	v, ok := a.inventoryVersion(w, r, "at")
	if !ok {
		return
	}
	inv, err := a.o.InventoryAt(v)
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

// inventoryVersions is GET /v1/inventory/versions: as `inventory list -o
// json`, newest first.
func (a *API) inventoryVersions(w http.ResponseWriter, r *http.Request) {
	vs, err := a.o.InventoryVersions()
	if err != nil {
		a.storeError(w, err)
		return
	}
	if vs == nil {
		vs = []overlord.InventoryVersion{}
	}
	writeJSON(w, http.StatusOK, vs)
}

// inventoryDiff is GET /v1/inventory/diff?old=&new=: as `inventory diff
// -o json`; the last two versions by default.
func (a *API) inventoryDiff(w http.ResponseWriter, r *http.Request) {
	oldV, ok := a.inventoryVersion(w, r, "old")
	if !ok {
		return
	}
	newV, ok := a.inventoryVersion(w, r, "new")
	if !ok {
		return
	}
	d, err := a.o.InventoryDiff(oldV, newV)
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// snapshotRequest is POST /v1/inventory's body.
type snapshotRequest struct {
	Target string `json:"target"`
}

// snapshot is POST /v1/inventory: take a snapshot of the target ('*' by
// default) now, as `inventory snapshot`; 201 with the new version.
func (a *API) snapshot(w http.ResponseWriter, r *http.Request) {
	var req snapshotRequest
	if r.ContentLength != 0 {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			writeError(w, http.StatusUnsupportedMediaType, status.KindBadArgs, "Content-Type must be application/json")
			return
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, status.KindBadArgs, "the request is not {\"target\": TARGET}: %v", err)
			return
		}
	}
	if req.Target == "" {
		req.Target = "*"
	}
	if _, _, err := a.o.Select(r.Context(), overlord.Selection{Target: req.Target}); errors.Is(err, overlord.ErrNoMatch) {
		writeError(w, http.StatusUnprocessableEntity, KindNoMatch, "%v", err)
		return
	} else if err != nil {
		writeError(w, http.StatusBadRequest, status.KindBadArgs, "%v", err)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(overlord.DefaultCallTimeout + time.Minute))
	v, err := a.o.InventorySnapshot(r.Context(), req.Target, overlord.SnapshotOptions{})
	if v.Version == 0 {
		if err == nil {
			err = errors.New("no version recorded")
		}
		a.storeError(w, err)
		return
	}
	if err != nil {
		// Recorded, with minions that did not answer: the version says so.
		a.logger.Info("api: inventory snapshot", "version", v.Version, "err", err)
	}
	w.Header().Set("Location", "/v1/inventory?at="+strconv.Itoa(v.Version))
	writeJSON(w, http.StatusCreated, v)
}
