package olla

import (
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddy-olla/olla/profiles"
	"github.com/caddy-olla/olla/ui"
	"github.com/caddy-olla/olla/usage"
)

// The dashboard: /internal/ui is the page, /internal/ui/data what it shows.
// Like every internal route it is hidden by `internal off`.

// dashboardModelsPerEndpoint bounds each endpoint's model list on the page;
// the count says how many there are in all.
const (
	dashboardModelsPerEndpoint = 200
	dashboardCatalogue         = 500
)

func (rq *request) serveDashboard(path string) error {
	if rq.h.Dashboard == "off" {
		return rq.fail(apiError{status: http.StatusNotFound, code: "not_found",
			message: "the dashboard is off in this config (dashboard off); the status JSON is at /internal/status"})
	}
	switch path {
	case "/internal/ui", "/internal/ui/":
		if ui.Serve(rq.w, rq.r, "index.html") {
			rq.rec.status = http.StatusOK
			return nil
		}
	case "/internal/ui/data":
		ui.SecurityHeaders(rq.w.Header())
		d := rq.h.dashboardData(time.Now())
		return rq.writeCached(cached{body: d.payload, stable: d.stable})
	default:
		if name, ok := strings.CutPrefix(path, "/internal/ui/"); ok && ui.Serve(rq.w, rq.r, name) {
			rq.rec.status = http.StatusOK
			return nil
		}
	}
	return rq.fail(apiError{status: http.StatusNotFound, code: "not_found", message: "no such dashboard file " + path})
}

// dashboardEndpoint is an endpoint as the page shows it.
type dashboardEndpoint struct {
	endpointStatus
	Models      []string `json:"models"`
	ModelsTotal int      `json:"models_total"`
	// Warm are the listed models resident now (load signals), drawn as
	// warm chips; a server that serves all it lists has them all warm
	Warm     []string `json:"warm_models,omitempty"`
	InFlight int64    `json:"in_flight"`
	endpointActivity
}

// catalogueKey is the dashboard's key for a model name: a name and the
// same with Ollama's implicit ":latest" tag are one model (routing finds
// either for the other), shown once under the first endpoint's spelling.
func catalogueKey(name string) string { return strings.TrimSuffix(name, ":latest") }

type dashboardModel struct {
	ID        string   `json:"id"`
	Endpoints []string `json:"endpoints"`
}

type dashboardPayload struct {
	Time           time.Time           `json:"time"`
	Endpoints      []dashboardEndpoint `json:"endpoints"`
	Catalogue      []dashboardModel    `json:"catalogue"`
	CatalogueShort bool                `json:"catalogue_truncated,omitempty"`
	Timeline       []timelinePoint     `json:"timeline"`
	Recent         []recentRequest     `json:"recent"`
	Queue          map[string]any      `json:"queue"`
	// Usage is the top keys (hashed) and models by tokens, with key_limits
	Usage *usage.Report `json:"usage,omitempty"`
	// Prefix is each endpoint's prefix index, with prefix affinity on
	Prefix []prefixView `json:"prefix,omitempty"`
}

// dashboardUsageKeys is how many keys the usage panel lists.
const dashboardUsageKeys = 10

// dashboardData is the page's data and the part of it its ETag covers:
// everything but the clock (the time, the endpoints' "checked 3s ago" and
// probe latencies), and of the timeline only its points with traffic, placed
// in the window, so an idle proxy answers 304 until something happens or a
// point of traffic moves along the chart.
type dashboardAnswer struct {
	payload dashboardPayload
	stable  dashboardPayload
}

func (h *Handler) dashboardData(now time.Time) dashboardAnswer {
	out, statuses := h.dashboardPayload(now)
	stable := out
	stable.Time = time.Time{}
	stable.Timeline = timelineShape(out.Timeline)
	stable.Endpoints = slices.Clone(out.Endpoints)
	for i := range stable.Endpoints {
		stable.Endpoints[i].endpointStatus = statuses[i]
	}
	return dashboardAnswer{payload: out, stable: stable}
}

// timelineShape keeps the points of a timeline that have anything to show,
// each timed by its place in the window instead of the clock.
func timelineShape(points []timelinePoint) []timelinePoint {
	var shape []timelinePoint
	for i, p := range points {
		if p != (timelinePoint{Time: p.Time}) {
			p.Time = int64(i)
			shape = append(shape, p)
		}
	}
	return shape
}

// dashboardPayload is the page's data, with the stable part of each
// endpoint's status (see describeStatus).
func (h *Handler) dashboardPayload(now time.Time) (dashboardPayload, []endpointStatus) {
	recent := h.app.activity.recent()
	perEndpoint := summarise(recent)
	out := dashboardPayload{Time: now.UTC().Truncate(time.Second), Recent: recent, Timeline: h.app.activity.timeline(now),
		Queue: h.queueStatus()}
	if h.keys != nil {
		rep := h.app.usage.Snapshot(dashboardUsageKeys)
		out.Usage = &rep
	}
	byModel := map[string]*dashboardModel{} // by catalogueKey
	statuses := make([]endpointStatus, 0, len(h.states))
	for _, st := range h.states {
		fs := st.Status(now)
		es, stable := describeStatus(fs, now)
		statuses = append(statuses, stable)
		de := dashboardEndpoint{endpointStatus: es, Models: []string{}, InFlight: fs.InFlight,
			endpointActivity: perEndpoint[es.Name]}
		var sig *profiles.Signals
		if fs.SignalsFresh {
			sig = fs.LastSignals
		}
		{
			de.ModelsTotal = len(fs.Models)
			for i, m := range fs.Models {
				if i < dashboardModelsPerEndpoint {
					de.Models = append(de.Models, m.Name)
					if sig != nil {
						if resident, _ := sig.Resident(m.Name); resident {
							de.Warm = append(de.Warm, m.Name)
						}
					}
				}
				switch e := byModel[catalogueKey(m.Name)]; {
				case e != nil:
					if e.Endpoints[len(e.Endpoints)-1] != es.Name { // listed as both spellings
						e.Endpoints = append(e.Endpoints, es.Name)
					}
				case len(byModel) < dashboardCatalogue:
					byModel[catalogueKey(m.Name)] = &dashboardModel{ID: m.Name, Endpoints: []string{es.Name}}
				default:
					out.CatalogueShort = true
				}
			}
		}
		out.Endpoints = append(out.Endpoints, de)
		if h.prefix != nil {
			if v, ok := h.prefix.view(st); ok {
				v.Endpoint = es.Name
				out.Prefix = append(out.Prefix, v)
			}
		}
	}
	out.Catalogue = make([]dashboardModel, 0, len(byModel))
	for _, m := range byModel {
		out.Catalogue = append(out.Catalogue, *m)
	}
	sort.Slice(out.Catalogue, func(i, j int) bool { return out.Catalogue[i].ID < out.Catalogue[j].ID })
	return out, statuses
}
