# netc: a static computation-graph compiler for ResNets.
#
#   make train   build netc and run the main job (see README.md)
#   make test    build and run the whole test suite
#   make         build build/netc
#
# Knobs: CC=clang, SANITIZE=1 (AddressSanitizer + UBSan), MODEL=models/x.net
# Generated sources (parser, lexer) go to build/, never into the tree.

ifeq ($(origin CC),default)
  CC := gcc
endif
# A sanitized build lives apart, so that its objects never mix with these.
ifeq ($(SANITIZE),1)
  BUILD  ?= build/san
endif
BUILD    ?= build
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
CPPFLAGS := -Icompiler -Iruntime -I$(BUILD)
ALLFLAGS  = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS)
ifeq ($(SANITIZE),1)
  SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
  ALLFLAGS += $(SAN_FLAGS)
  LDFLAGS  += -fsanitize=address,undefined
endif
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)
# OpenBLAS built with OpenMP: one thread pool for GEMMs and our loops. (With
# the pthreads build, both pools spin against each other on 2 cores: a
# training step took 1.9x as long, measured on ResNet-18.)
BLAS_DIR    = /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_CFLAGS = $(shell PKG_CONFIG_PATH=$(BLAS_DIR)/pkgconfig pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS   = -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas
# The kernels: vectorized for AVX2/FMA (x86-64-v3), which every machine
# this project targets has; override with RT_ARCH= on older ones.
RT_ARCH    ?= -march=x86-64-v3
RT_FLAGS    = -fopenmp -O3 $(RT_ARCH) $(BLAS_CFLAGS)
RT_LIBS     = -fopenmp $(BLAS_LIBS) -ljpeg -lm -lpthread

MODEL  ?= models/resnet18.net
MODELS := $(filter-out models/blocks.net,$(wildcard models/*.net))

COMPILER_SRC := pool.c diag.c ast.c ops.c graph.c infer.c algo.c tune.c \
                autodiff.c comm.c plan.c load.c report.c dump.c codegen.c build.c
# runtime/util.c serves the compiler too (build.c's make_dirs).
COMPILER_OBJ := $(addprefix $(BUILD)/,$(COMPILER_SRC:.c=.o)) \
                $(BUILD)/parse.o $(BUILD)/lex.o $(BUILD)/util.o
# The runtime: everything in runtime/ but the trainer's main().
RT_SRC := $(filter-out runtime/trainer.c runtime/tune_main.c,$(wildcard runtime/*.c))
RT_HEADERS := $(wildcard runtime/*.h)
RT_OBJ := $(patsubst runtime/%.c,$(BUILD)/rt/%.o,$(RT_SRC))
# runtime/isa/ holds kernels compiled once per instruction set; the
# trainer picks one at run time (rt_set_isa). -ffp-contract=fast: their
# vector a += s * v is one FMA.
ISA_ARCH_avx2   := -march=x86-64-v3
ISA_ARCH_avx512 := -march=x86-64-v4
ISA_SRC := $(wildcard runtime/isa/*.c)
RT_OBJ += $(foreach i,avx2 avx512,$(patsubst runtime/isa/%.c,$(BUILD)/rt/%_$(i).o,$(ISA_SRC)))
# The runtime of data-parallel trainers (netc build --mpi): the same
# objects, with comm.c compiled by Open MPI's mpicc against MPI.
MPICC ?= mpicc
RT_MPI_OBJ := $(filter-out $(BUILD)/rt/comm.o,$(RT_OBJ)) $(BUILD)/rt/comm_mpi.o
TEST_SRC := $(wildcard tests/check_*.c)
TEST_OBJ := $(patsubst tests/%.c,$(BUILD)/tests/%.o,$(TEST_SRC)) \
            $(BUILD)/tests/fuzz_front.o

.PHONY: all deps test-deps train test check-models warnings clean golden graphs \
        plans bench bench-layers bench-algos bench-peak bench-mpi fuzz
.DEFAULT_GOAL := all

all: deps $(BUILD)/netc $(BUILD)/libnetcrt.a $(BUILD)/libnetcrt_mpi.a \
     $(BUILD)/trainer.o $(BUILD)/netc-tune

deps:
	@sh .ci/deps build

test-deps:
	@sh .ci/deps test

$(BUILD)/parse.c $(BUILD)/parse.h: compiler/parse.y
	@mkdir -p $(BUILD)
	bison -Wall -Werror --defines=$(BUILD)/parse.h -o $(BUILD)/parse.c $<

$(BUILD)/lex.c $(BUILD)/lex.h: compiler/lex.l $(BUILD)/parse.h
	flex --header-file=$(BUILD)/lex.h -o $(BUILD)/lex.c $<

# Generated code is not ours to keep warning-free in every respect.
GEN_FLAGS := -Wno-unused-function -Wno-sign-compare -Wno-shadow

$(BUILD)/parse.o: $(BUILD)/parse.c $(BUILD)/lex.h compiler/netc.h
	$(CC) $(ALLFLAGS) $(GEN_FLAGS) $(CPPFLAGS) -c -o $@ $<

$(BUILD)/lex.o: $(BUILD)/lex.c compiler/netc.h
	$(CC) $(ALLFLAGS) $(GEN_FLAGS) $(CPPFLAGS) -c -o $@ $<

# netc.h includes runtime/netc_rt.h (ConvShape, the algorithms' sizes).
$(BUILD)/%.o: compiler/%.c compiler/netc.h runtime/netc_rt.h $(BUILD)/parse.h
	$(CC) $(ALLFLAGS) $(CPPFLAGS) -c -o $@ $<

# The op table sizes kernel workspaces with the runtime's own formulas.
$(BUILD)/ops.o: runtime/netc_rt.h

# The compiler's copy of the runtime's helpers: plain C, without the
# runtime's OpenMP and -march flags, so netc runs on any x86-64.
$(BUILD)/util.o: runtime/util.c runtime/util.h
	@mkdir -p $(BUILD)
	$(CC) $(ALLFLAGS) -c -o $@ $<

# netc build compiles trainers against this tree's runtime.
$(BUILD)/build.o: compiler/build.c compiler/netc.h runtime/util.h $(BUILD)/parse.h
	$(CC) $(ALLFLAGS) $(CPPFLAGS) -DNETC_RT_INCLUDE='"$(abspath runtime)"' \
	  -DNETC_RT_LIBDIR='"$(abspath $(BUILD))"' -DNETC_CC='"$(CC) $(SAN_FLAGS)"' \
	  -DNETC_MPICC='"$(MPICC) $(SAN_FLAGS)"' \
	  -DNETC_BLAS_LIBS='"$(BLAS_LIBS) -ljpeg"' -c -o $@ $<

$(BUILD)/trainer.o: runtime/trainer.c $(RT_HEADERS)
	$(CC) $(ALLFLAGS) $(RT_FLAGS) -Iruntime -c -o $@ $<

# netc-tune: each conv pass timed with every algorithm (netc build --tune,
# make bench-algos).
$(BUILD)/netc-tune: runtime/tune_main.c $(BUILD)/libnetcrt.a $(RT_HEADERS)
	$(CC) $(ALLFLAGS) $(RT_FLAGS) -Iruntime -o $@ $< $(BUILD)/libnetcrt.a $(RT_LIBS)

# Archives are made afresh: `ar r` keeps members whose source is gone (a
# runtime/data.o left in libnetcrt.a would still define dataset_open).
$(BUILD)/libnetc.a: $(COMPILER_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/netc: $(BUILD)/main.o $(BUILD)/libnetc.a
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/rt/%.o: runtime/%.c $(RT_HEADERS)
	@mkdir -p $(BUILD)/rt
	$(CC) $(ALLFLAGS) $(RT_FLAGS) -Iruntime -c -o $@ $<

$(BUILD)/rt/%_avx2.o: runtime/isa/%.c $(RT_HEADERS)
	@mkdir -p $(BUILD)/rt
	$(CC) $(ALLFLAGS) $(RT_FLAGS) $(ISA_ARCH_avx2) -ffp-contract=fast -Wno-psabi -Iruntime -c -o $@ $<

$(BUILD)/rt/%_avx512.o: runtime/isa/%.c $(RT_HEADERS)
	@mkdir -p $(BUILD)/rt
	$(CC) $(ALLFLAGS) $(RT_FLAGS) $(ISA_ARCH_avx512) -ffp-contract=fast -Wno-psabi -Iruntime -c -o $@ $<

$(BUILD)/libnetcrt.a: $(RT_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/rt/comm_mpi.o: runtime/comm.c $(RT_HEADERS)
	@mkdir -p $(BUILD)/rt
	$(MPICC) $(ALLFLAGS) $(RT_FLAGS) -DNETC_MPI -Iruntime -c -o $@ $<

$(BUILD)/libnetcrt_mpi.a: $(RT_MPI_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/%.o: tests/%.c tests/check_netc.h compiler/netc.h $(RT_HEADERS) $(BUILD)/parse.h
	@mkdir -p $(BUILD)/tests
	$(CC) $(ALLFLAGS) $(CPPFLAGS) $(BLAS_CFLAGS) -Itests -Iruntime -c -o $@ $<

$(BUILD)/tests/fuzz_front.o: tests/fuzz/fuzz_front.c compiler/netc.h $(BUILD)/parse.h
	@mkdir -p $(BUILD)/tests
	$(CC) $(ALLFLAGS) $(CPPFLAGS) -c -o $@ $<

# The check runner counts allocations (tests/check_runtime.c: no kernel
# allocates): our objects' calls of these go through its __wrap_ versions.
WRAP_ALLOC = $(foreach f,malloc calloc realloc posix_memalign aligned_alloc,-Wl,--wrap=$(f))
$(BUILD)/check_netc: $(TEST_OBJ) $(BUILD)/libnetc.a $(BUILD)/libnetcrt.a
	$(CC) $(LDFLAGS) $(WRAP_ALLOC) -o $@ $^ $(CHECK_LIBS) $(RT_LIBS)

# The compiler must build warning-free with both gcc and clang.
warnings: deps
	$(MAKE) --no-print-directory CC=clang BUILD=$(BUILD)/clang $(BUILD)/clang/netc

# Sanitized, the training tests build their trainers with --conv gemm
# (tests/check_train.c says why).
test: deps test-deps all $(BUILD)/check_netc warnings
	NETC=$(BUILD)/netc $(if $(filter 1,$(SANITIZE)),NETC_TEST_CONV=gemm) \
	  $(BUILD)/check_netc

# Every model in the zoo must check; prints each summary's totals line.
check-models: $(BUILD)/netc
	@for m in $(MODELS); do \
	  printf '%-28s ' $$m; $(BUILD)/netc check $$m | tail -n 1 || exit 1; \
	done

# The main job: compile MODEL at batch BATCH and train it on TinyImageNet-200
# (DATA, else data/tiny-imagenet-200, extracted from ../shared if needed).
# The network's arguments: CLASSES=10, INPUT=3x32x32, or any as
# DEFINES='-D name=value ...' (netc build -D).
EPOCHS ?= 30
TRAIN_ARGS ?=
NET_DEFINES = $(if $(CLASSES),-D classes=$(CLASSES)) $(if $(INPUT),-D input=$(INPUT)) $(DEFINES)
train: all
	@sh .ci/deps train
	@data=$${DATA:-$$(sh .ci/fetch-data data/tiny-imagenet-200)} && \
	name=$$($(BUILD)/netc check $(NET_DEFINES) $(MODEL) | tail -n 1 | sed 's/^network=\([^ ]*\).*/\1/') && \
	$(BUILD)/netc build $(NET_DEFINES) -b $(BATCH) -o $(BUILD)/train/$$name $(MODEL) && \
	$(BUILD)/train/$$name/$$name train --data $$data --epochs $(EPOCHS) \
	  --out runs/$$name $(TRAIN_ARGS)

# Training throughput of netc and PyTorch on this machine (tests/bench/,
# docs/benchmarks.md): netc's bench, PyTorch in both memory formats, and
# netc's real train command end to end on TinyImageNet (E2E=0 skips it).
# BENCH_MODELS, BATCH, THREADS, STEPS, PROFILE=1, E2E, E2E_STEPS, DATA.
BENCH_MODELS ?= models/resnet18.net models/resnet50.net
bench: all
	@sh .ci/deps test
	@sh tests/bench/run.sh $(BUILD)/netc $(BUILD)/bench $(BENCH_MODELS)

# netc's and PyTorch's time per convolution shape and pass, as a Markdown
# table (tests/bench/layers.py, docs/benchmarks.md). MODEL (here
# models/resnet50.net unless given), BATCH, THREADS, STEPS, TORCH_FORMAT.
LAYERS_MODEL = $(if $(filter command line environment,$(origin MODEL)),$(MODEL),models/resnet50.net)
# Each conv shape of MODEL timed with every algorithm, per pass, on this
# machine: the tuning file netc build --tune would write (docs/kernels.md).
bench-algos: all
	@env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BUILD)/netc build --tune \
	  --threads $${THREADS:-2} --no-compile -b $(BATCH) -o $(BUILD)/bench/algos $(MODEL)
	@cat $(BUILD)/bench/algos/*.tune

# Data parallelism on this machine (tests/bench/mpi.sh,
# docs/distributed.md): 1 process x 2 threads against 2 x 1 at the same
# global batch, the time a step waits for its sums, and MPI_Allreduce of
# the real bucket sizes over shared memory and TCP.
bench-mpi: all
	@sh tests/bench/mpi.sh $(BUILD)/netc $(BUILD)/bench-mpi $(BENCH_MODELS)

# This CPU's float32 FMA peak on THREADS threads (tests/bench/fma_peak.c):
# the denominator of "fraction of peak" in docs/kernels.md.
bench-peak: deps
	@mkdir -p $(BUILD)
	@$(CC) -O3 -march=native -fopenmp -o $(BUILD)/fma_peak tests/bench/fma_peak.c
	@OMP_NUM_THREADS=$${THREADS:-2} $(BUILD)/fma_peak

bench-layers: all
	@sh .ci/deps test
	@/usr/bin/python3 tests/bench/layers.py --netc $(BUILD)/netc \
	  --out $(BUILD)/bench --batch $(BATCH) --threads $${THREADS:-2} \
	  --steps $${STEPS:-3} --format $${TORCH_FORMAT:-channels_last} \
	  $(LAYERS_MODEL)

# The three numbers of every model's memory plan at batch $(BATCH), as a
# Markdown table (docs/memory-plan.md quotes it).
BATCH ?= 64
plans: $(BUILD)/netc
	@echo "| model | naive bytes | lower bound bytes | planned bytes | planned / bound | persistent bytes (SGD) | persistent bytes (Adam) |"
	@echo "|---|---:|---:|---:|---:|---:|---:|"
	@for m in $(MODELS); do \
	  $(BUILD)/netc dump plan -b $(BATCH) $$m > $(BUILD)/plan.txt || exit 1; \
	  tail -n 1 $(BUILD)/plan.txt | tr ' =' '\n\n' | awk -v m=$$m \
	    -v p=$$(grep -o '[0-9]* with SGD momentum' $(BUILD)/plan.txt | cut -d' ' -f1) \
	    -v a=$$(grep -o '[0-9]* with Adam.s moments' $(BUILD)/plan.txt | cut -d' ' -f1) \
	    'NR % 2 == 0 { v[NR / 2] = $$1 } END { printf "| %s | %s | %s | %s | %.4f | %s | %s |\n", \
	      m, v[1], v[2], v[3], v[3] / v[2], p, a }'; \
	done

# Renders every model's training graph and memory plan to SVG in
# build/graphs/ (Graphviz's dot draws the graphs).
graphs: $(BUILD)/netc
	@sh .ci/deps graphs
	@mkdir -p $(BUILD)/graphs
	@for m in $(MODELS) tests/golden/small.net; do \
	  n=$$(basename $$m .net); \
	  $(BUILD)/netc dump dot $$m | dot -Tsvg -o $(BUILD)/graphs/$$n.svg || exit 1; \
	  $(BUILD)/netc dump memory -o $(BUILD)/graphs/$$n-memory.svg $$m || exit 1; \
	  echo "$(BUILD)/graphs/$$n.svg $(BUILD)/graphs/$$n-memory.svg"; \
	done

# Fuzzes the front end for FUZZ_TIME seconds with libFuzzer (clang,
# ASan + UBSan), starting from tests/fuzz/corpus, models/ and tests/errors/.
# Findings go to $(BUILD)/fuzz/crashes/; inputs that reach new code are
# merged into tests/fuzz/corpus/, which make test replays.
FUZZ_TIME ?= 600
FUZZ_JOBS ?= 1   # processes; fork mode keeps going after a finding
FUZZ_SAN  := -fsanitize=address,undefined -fno-sanitize-recover=all
fuzz: deps
	@sh .ci/deps fuzz
	$(MAKE) --no-print-directory CC=clang BUILD=$(BUILD)/fuzz \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
	  $(BUILD)/fuzz/libnetc.a
	clang -O1 -g -fsanitize=fuzzer $(FUZZ_SAN) -Icompiler -I$(BUILD)/fuzz \
	  -o $(BUILD)/fuzz/fuzz_front tests/fuzz/fuzz_front.c $(BUILD)/fuzz/libnetc.a
	@mkdir -p $(BUILD)/fuzz/corpus $(BUILD)/fuzz/crashes tests/fuzz/corpus
	$(BUILD)/fuzz/fuzz_front -max_total_time=$(FUZZ_TIME) -fork=$(FUZZ_JOBS) \
	  -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -timeout=20 -rss_limit_mb=4096 -max_len=8192 \
	  -dict=tests/fuzz/netc.dict -artifact_prefix=$(BUILD)/fuzz/crashes/ \
	  -print_final_stats=1 $(BUILD)/fuzz/corpus tests/fuzz/corpus models tests/errors
	$(BUILD)/fuzz/fuzz_front -merge=1 tests/fuzz/corpus $(BUILD)/fuzz/corpus

# Regenerates tests/golden/ from the current compiler: review the diff.
golden: $(BUILD)/netc
	sh tests/golden/update.sh $(BUILD)/netc

clean:
	rm -rf $(BUILD)
