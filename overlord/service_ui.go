package overlord

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// serviceUIPath answers with the dashboard's login URL, for `overlord ui
// url`; like every path of the socket, only to the state directory's
// owner.
const serviceUIPath = "/local/ui"

// Errors of ServiceUI.
var (
	// ErrNoService is returned when no overlord service answers on the
	// state directory.
	ErrNoService = errors.New("no overlord service runs")
	// ErrNoUI is returned when the service runs without a dashboard.
	ErrNoUI = errors.New("the overlord service runs without a dashboard (no --ui)")
)

// SetUI gives the service the dashboard's login URL, which it hands to
// `overlord ui url`.
func (s *Service) SetUI(loginURL string) { s.uiURL.Store(&loginURL) }

// serviceUI is the answer to serviceUIPath.
type serviceUI struct {
	URL string `json:"url"`
}

func (s *Service) ui(w http.ResponseWriter, _ *http.Request) {
	u := s.uiURL.Load()
	if u == nil || *u == "" {
		writeJSONReply(w, http.StatusNotFound, map[string]string{"error": ErrNoUI.Error()})
		return
	}
	writeJSONReply(w, http.StatusOK, serviceUI{URL: *u})
}

// ServiceUI asks the service on o's state directory for the dashboard's
// login URL: ErrNoService if none answers, ErrNoUI if it has no
// dashboard.
func (o *Overlord) ServiceUI(ctx context.Context) (string, error) {
	// The service is asked as the state directory's owner, whatever
	// identity o calls minions as.
	so := o.as("")
	how, ok := so.UseService(ctx)
	if !ok {
		return "", fmt.Errorf("%w on %s: %s", ErrNoService, o.Dir, strings.TrimPrefix(how, "direct: "))
	}
	var got serviceUI
	err := serviceDo(ctx, so.service.http, http.MethodGet, serviceUIPath, http.StatusOK, &got)
	var se *serviceStatusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		return "", ErrNoUI
	}
	if err != nil {
		return "", err
	}
	return got.URL, nil
}
