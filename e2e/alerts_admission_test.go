package e2e

import (
	"testing"
)

// TestAlertsAdmissionRulesFire runs promtool test rules on the admission
// control alerts of deploy/prometheus/alerts.yml (spec section 10): each
// fires on the series it watches, with what an operator receives, and
// stays silent on a short burst and without a cap.
func TestAlertsAdmissionRulesFire(t *testing.T) {
	promtoolTestRules(t, admissionAlertsUnitTests)
}

// admissionAlertsUnitTests: values per minute (interval 1m).
const admissionAlertsUnitTests = `
rule_files:
  - RULES_FILE
evaluation_interval: 1m
tests:
  - name: ObsproxyQueueFull
    interval: 1m
    input_series:
      # op: full rejections at 60 per minute (1/s) from minute 1 on.
      - series: 'obsproxy_queue_rejected_total{job="obsproxy",instance="op:9090",reason="full"}'
        values: '0+60x30'
      - series: 'obsproxy_queue_rejected_total{job="obsproxy",instance="op:9090",reason="timeout"}'
        values: '0x30'
      # burst: full for 3 minutes only, then never again.
      - series: 'obsproxy_queue_rejected_total{job="obsproxy",instance="burst:9090",reason="full"}'
        values: '0 60 120 180 180x26'
      - series: 'obsproxy_queue_rejected_total{job="obsproxy",instance="burst:9090",reason="timeout"}'
        values: '0x30'
      # nocap: no cap, every series 0.
      - series: 'obsproxy_queue_rejected_total{job="obsproxy",instance="nocap:9090",reason="full"}'
        values: '0x30'
    alert_rule_test:
      - eval_time: 5m
        alertname: ObsproxyQueueFull
        exp_alerts: []
      - eval_time: 20m
        alertname: ObsproxyQueueFull
        exp_alerts:
          - exp_labels: {severity: critical, job: obsproxy, instance: "op:9090"}
            exp_annotations:
              summary: "obsproxy op:9090: the admission queue has been full for 10 minutes"
              description: "Requests find OBSPROXY_QUEUE_SIZE requests already waiting and get 503 overloaded (1/s). Every worker is at OBSPROXY_WORKER_MAX_IN_FLIGHT: add workers, or check whether a worker slowed down (obsproxy_request_duration_seconds, obsproxy_oldest_in_flight_seconds)."

  - name: ObsproxyOverloadRejections
    interval: 1m
    input_series:
      # 600 requests a minute, 12 of them rejected (2%): 6 full, 6 timeout.
      - series: 'obsproxy_requests_total{job="obsproxy",instance="op:9090",worker="w1",code="200",method="GET"}'
        values: '0+588x20'
      - series: 'obsproxy_requests_total{job="obsproxy",instance="op:9090",worker="none",code="503",method="GET"}'
        values: '0+12x20'
      - series: 'obsproxy_queue_rejected_total{job="obsproxy",instance="op:9090",reason="full"}'
        values: '0+6x20'
      - series: 'obsproxy_queue_rejected_total{job="obsproxy",instance="op:9090",reason="timeout"}'
        values: '0+6x20'
      # calm: 600 a minute, 1 timeout a minute (0.17%): below the threshold.
      - series: 'obsproxy_requests_total{job="obsproxy",instance="calm:9090",worker="w1",code="200",method="GET"}'
        values: '0+599x20'
      - series: 'obsproxy_requests_total{job="obsproxy",instance="calm:9090",worker="none",code="503",method="GET"}'
        values: '0+1x20'
      - series: 'obsproxy_queue_rejected_total{job="obsproxy",instance="calm:9090",reason="full"}'
        values: '0x20'
      - series: 'obsproxy_queue_rejected_total{job="obsproxy",instance="calm:9090",reason="timeout"}'
        values: '0+1x20'
    alert_rule_test:
      - eval_time: 3m
        alertname: ObsproxyOverloadRejections
        exp_alerts: []
      - eval_time: 15m
        alertname: ObsproxyOverloadRejections
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090"}
            exp_annotations:
              summary: "obsproxy op:9090 rejects 2% of its requests as overloaded"
              description: "More than 1% of the requests have been answered 503 overloaded for 5 minutes. obsproxy_queue_rejected_total by reason tells whether the queue was full or the wait too long; obsproxy_queue_wait_seconds shows how long the admitted ones waited."

  - name: ObsproxyQueueBacklog
    interval: 1m
    input_series:
      # op: never fewer than 3 waiting from minute 1 on.
      - series: 'obsproxy_queue_depth{job="obsproxy",instance="op:9090"}'
        values: '0 5 3 8 4 6 3 9 5 3 7 4 5 6 3 4 5 8 3 4 6 5'
      # bursty: the queue empties now and then.
      - series: 'obsproxy_queue_depth{job="obsproxy",instance="bursty:9090"}'
        values: '0 5 3 8 0 6 3 9 5 0 7 4 5 6 0 4 5 8 3 0 6 5'
    alert_rule_test:
      - eval_time: 10m
        alertname: ObsproxyQueueBacklog
        exp_alerts: []
      - eval_time: 17m
        alertname: ObsproxyQueueBacklog
        exp_alerts:
          - exp_labels: {severity: warning, job: obsproxy, instance: "op:9090"}
            exp_annotations:
              summary: "obsproxy op:9090: requests have waited in the admission queue for 15 minutes without a break"
              description: "At least 3 requests have been waiting at every scrape for 15 minutes: the pool runs at OBSPROXY_WORKER_MAX_IN_FLIGHT per worker all the time. Add workers before bursts turn into rejections."
`
