# Setpoint's Makefile. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN := $(CURDIR)/bin
GO ?= go
# Tests start real control planes; a whole run stays well under this.
TEST_TIMEOUT ?= 20m
# Extra flags for `go test`, e.g. TEST_FLAGS='-run TestStart -v'.
TEST_FLAGS ?=
# Sizes (numbers of Apps) of the end-to-end benchmark (bench/), e.g.
# BENCH_APPS=5000; more flags in BENCH_FLAGS, e.g. BENCH_FLAGS=-churn=2m.
BENCH_APPS ?= 100,1000
BENCH_FLAGS ?=
# Which of bench/'s benchmarks run (a -bench pattern), e.g. BENCH=Apps.
BENCH ?= .
# Flags for `setpoint dev`, e.g. DEV_FLAGS='--nodes 3 --data-dir .setpoint'.
DEV_FLAGS ?=

K8S_TOOLS := $(BIN)/kube-apiserver $(BIN)/kube-controller-manager $(BIN)/kube-scheduler $(BIN)/kubectl
TOOLS := $(BIN)/etcd $(K8S_TOOLS) $(BIN)/kwok $(BIN)/kwok-stages.yaml $(BIN)/controller-gen $(BIN)/helm

##@ Everyday

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2} /^##@/ {printf "\n%s\n", substr($$0, 5)}' $(MAKEFILE_LIST)

.PHONY: dev
dev: tools build ## Run Setpoint on a fresh local control plane with simulated nodes.
	$(BIN)/setpoint dev $(DEV_FLAGS)

.PHONY: generate
generate: $(BIN)/controller-gen ## Generate deepcopy code and CRDs (config/crd/bases) from the Go types in api/.
	$(BIN)/controller-gen object paths=./api/...
	$(BIN)/controller-gen crd paths=./api/... output:crd:artifacts:config=config/crd/bases

.PHONY: manifests
manifests: generate ## Generate RBAC from the +kubebuilder:rbac markers (config/rbac, config/operators/*) and the Helm chart's RBAC and CRD templates (hack/manifests.sh).
	CONTROLLER_GEN=$(BIN)/controller-gen hack/manifests.sh

# Fails when the committed generated files differ from what `make generate`
# and `make manifests` make now (it leaves them regenerated, ready to commit).
.PHONY: check-generated
check-generated: $(BIN)/controller-gen
	@gen() { find api config charts -name 'zz_generated.*' -o -name '*.yaml' | sort | xargs sha256sum; }; \
	  before=$$(gen); $(MAKE) -s manifests; after=$$(gen); \
	  if [ "$$before" != "$$after" ]; then echo "generated files were stale; \`make manifests\` has updated them, commit the result:"; \
	    diff <(echo "$$before") <(echo "$$after") | grep '^>' | awk '{print "  " $$3}'; exit 1; fi

.PHONY: test
test: deps tools build check-generated ## Install what the tests need, build the tools if needed, check generated files, vet, and run every test (race detector on).
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^hack/tools/')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./...

.PHONY: bench
bench: tools build bench-tools ## Run the benchmarks: the library's (testing.B), then bench/'s: Setpoint against a plain controller-runtime App operator (sizes BENCH_APPS), the reloader with 5,000 Deployments, every operator beside big neighbours (20,000 Secrets of 50 KiB, 5,000 ConfigMaps, 5,000 Deployments), the Celery autoscaler on Redis and RabbitMQ; PostgresCluster failover and switchover (test/postgres, 20 trials).
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m $$($(GO) list ./... | grep -v '/bench\|/test/postgres')
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 20x -timeout 60m ./test/postgres/
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -timeout 60m ./bench/ -args -apps $(BENCH_APPS) $(BENCH_FLAGS)

.PHONY: chaos
chaos: tools build ## Run the long fault and churn suites (make test runs short versions) and print their table (hack/chaos.sh, docs/reliability.md): kube-apiserver SIGKILLed 10 times and etcd 3 times under churn of 100 Apps; a leader cut off for 30 s; a namespace of 1,000 handled objects deleted, with the operator up and down; 200 random App edits; 200 Celery tasks through scale cycles; 100 SIGKILLs of two leader-elected operator replicas under churn of 500 Widgets, and 100 of two `setpoint run --leader-elect` replicas under churn of 500 Apps; 40 rounds of a frozen API server and a frozen PostgreSQL primary with no false failover.
	GO=$(GO) hack/chaos.sh

.PHONY: bench-tools
bench-tools: ## Build bin/setpoint-baseline, the plain controller-runtime App operator the benchmarks compare with.
	$(GO) build -o $(BIN)/setpoint-baseline ./bench/baseline

.PHONY: build
build: ## Build bin/setpoint and bin/setpoint-postgres-agent (the agent of PostgresCluster pods, which process nodes bind into pods).
	$(GO) build -o $(BIN)/setpoint ./cmd/setpoint
	$(GO) build -o $(BIN)/setpoint-postgres-agent ./cmd/setpoint-postgres-agent

IMAGE ?= ghcr.io/setpoint-dev/setpoint:dev
.PHONY: image
image: ## Build the container image IMAGE with docker (needs a Docker engine).
	docker build -t $(IMAGE) --build-arg VERSION=$$(git describe --tags --always --dirty) .

##@ Tools (pinned in hack/tools, built into bin/)

.PHONY: deps
deps: ## Install the Debian packages the tests need, if missing (hack/deps.sh).
	@hack/deps.sh

.PHONY: tools
tools: $(TOOLS) ## Build the control plane binaries and controller-gen if missing or outdated.

$(BIN)/etcd: hack/tools/etcd/go.mod hack/tools/etcd/go.sum
	@echo ">> building etcd from $$(cd hack/tools/etcd && $(GO) list -m -f '{{.Path}} {{.Version}}' go.etcd.io/etcd/server/v3) (cold: about 1 minute)"
	cd hack/tools/etcd && $(GO) build -o $@ go.etcd.io/etcd/server/v3

# One build makes all four: they share most of their packages. kubectl is
# here so that a machine with nothing but Go can follow the README.
$(K8S_TOOLS) &: hack/tools/kubernetes/go.mod hack/tools/kubernetes/go.sum
	@v=$$(cd hack/tools/kubernetes && $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes); \
	  echo ">> building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl from k8s.io/kubernetes $$v (cold: about 8 minutes on 2 cores)"; \
	  minor=$$(echo $$v | cut -d. -f2); \
	  cd hack/tools/kubernetes && $(GO) build -o $(BIN)/ \
	    -ldflags "-X k8s.io/component-base/version.gitVersion=$$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$$minor" \
	    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
	    k8s.io/kubernetes/cmd/kubectl
	@touch $(K8S_TOOLS)

$(BIN)/kwok: hack/tools/kwok/go.mod hack/tools/kwok/go.sum
	@echo ">> building kwok from $$(cd hack/tools/kwok && $(GO) list -m -f '{{.Path}} {{.Version}}' sigs.k8s.io/kwok) (cold: about 2 minutes)"
	cd hack/tools/kwok && $(GO) build -o $@ sigs.k8s.io/kwok/cmd/kwok

# kwok's Stage documents (node Ready with heartbeats, pods Running, deleted
# pods removed), taken from the same pinned module as the binary.
$(BIN)/kwok-stages.yaml: hack/tools/kwok/go.mod hack/tools/kwok/go.sum
	@mkdir -p $(BIN)
	cd hack/tools/kwok && $(GO) mod download sigs.k8s.io/kwok && \
	  dir=$$($(GO) list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage && \
	  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
	           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do \
	    echo '---'; cat "$$dir/$$f"; done > $@.tmp && mv $@.tmp $@

# Renders charts/setpoint in the tests, so the chart is checked like the
# kustomize YAML.
$(BIN)/helm: hack/tools/helm/go.mod hack/tools/helm/go.sum
	@echo ">> building helm (cold: about 2 minutes)"
	cd hack/tools/helm && $(GO) build -o $@ helm.sh/helm/v3/cmd/helm

$(BIN)/controller-gen: hack/tools/controller-gen/go.mod hack/tools/controller-gen/go.sum
	@echo ">> building controller-gen (cold: about 1 minute)"
	cd hack/tools/controller-gen && $(GO) build -o $@ sigs.k8s.io/controller-tools/cmd/controller-gen

.PHONY: clean
clean: ## Remove bin/ (the tools are rebuilt by the next make tools).
	rm -rf $(BIN)
