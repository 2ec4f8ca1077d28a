/* parse.y: the grammar of the .net language (a pure bison parser).
 *
 * Actions only build AST nodes (ast.c); meaning is given by infer.c.
 * Error recovery happens at statement boundaries, so one run reports
 * several mistakes. The grammar, with examples, is in docs/language.md. */
%define api.pure full
%define api.prefix {netc_yy}
%define parse.error detailed
%locations
%expect 0
%param {void *scanner}
%parse-param {struct ParseCtx *pc}

%code requires {
#include "netc.h"
/* Scanner state, shared with lex.l. */
struct LexState {
  Diag *diag;
  Pool *pool;
  int file;
  int line, col;
  int depth;  /* open ( and { */
  int parens; /* open ( only: newlines inside them are spaces */
  int last;   /* the previous token */
  bool eof_newline;
  Loc open[MAX_NESTING + 1]; /* where each open bracket is */
  Loc last_loc;      /* where the previous token is */
  Loc cont;          /* the last token that continued a line */
  bool at_eof;
  Loc comment; /* where an open comment started */
};
struct ParseCtx {
  Diag *diag;
  Pool *pool;
  int file;
  Decl *decls;
  bool too_deep;
  struct LexState *lex;
};
struct ShapeLit {
  int64_t dims[MAX_SHAPE_DIMS];
  int ndims;
};
}

%code provides {
int netc_yylex(NETC_YYSTYPE *lval, NETC_YYLTYPE *lloc, void *scanner);
void netc_yyerror(NETC_YYLTYPE *lloc, void *scanner, struct ParseCtx *pc,
                  const char *msg);
}

%code {
#include <string.h>
#define L(at) ((Loc){pc->file, (at).first_line, (at).first_column})
#define P pc->pool
/* Deep expressions would make every later (recursive) pass deep too. */
static Expr *bounded(struct ParseCtx *pc, Expr *e) {
  if (e->depth > MAX_NESTING && !pc->too_deep) {
    diag_error(pc->diag, e->loc, "expression nested deeper than %d levels",
               MAX_NESTING);
    pc->too_deep = true;
  }
  return e;
}
}

%union {
  int64_t ival;
  double rval;
  const char *str;
  struct ShapeLit shape;
  Expr *expr;
  Arg *arg;
  Stmt *stmt;
  Param *param;
  Decl *decl;
}

%token END 0 "end of file"
%token NEWLINE "end of line"
%token NETWORK "network" BLOCK "block" IMPORT "import" SHARED "shared"
%token RETURN "return" REPEAT "repeat" IF "if" ELSE "else"
%token ARROW "->" EQ "==" NE "!=" LE "<=" GE ">=" AND "&&" OR "||"
%token <ival> INT "integer" BOOL "boolean"
%token <rval> REAL "number"
%token <shape> SHAPE "shape"
%token <str> IDENT "identifier" STRING "string"

%type <expr> expr primary call chain_target
%type <arg> args arg_list arg
%type <stmt> stmts stmt block_body
%type <param> params param_list param
%type <decl> decl

%precedence ARROW
%left OR
%left AND
%left EQ NE
%left '<' LE '>' GE
%left '+' '-'
%left '*' '/' '%'
%precedence UNARY

%%

/* file: decl* */
file:
    %empty
  | file decl     { pc->decls = append_decl(pc->decls, $2); }
  | file NEWLINE
  | file error NEWLINE { yyerrok; }
  ;

/* decl: 'import' STRING
 *     | 'block' IDENT '(' params ')' '{' stmts '}'
 *     | 'network' IDENT '(' params ')' '{' stmts '}' */
decl:
    IMPORT STRING NEWLINE {
      $$ = pool_alloc(P, sizeof(Decl));
      *$$ = (Decl){.kind = DECL_IMPORT, .loc = L(@2), .name = $2};
    }
  | BLOCK IDENT '(' params ')' block_body {
      $$ = pool_alloc(P, sizeof(Decl));
      *$$ = (Decl){.kind = DECL_BLOCK, .loc = L(@2), .name = $2,
                   .params = $4, .body = $6};
    }
  | NETWORK IDENT '(' params ')' block_body {
      $$ = pool_alloc(P, sizeof(Decl));
      *$$ = (Decl){.kind = DECL_NETWORK, .loc = L(@2), .name = $2,
                   .params = $4, .body = $6};
    }
  ;

/* A '{' may also start the next line. */
block_body:
    newlines '{' stmts '}' { $$ = $3; }
  ;
newlines:
    %empty
  | newlines NEWLINE
  ;

/* params: (param (',' param)*)? ; param: IDENT ('=' expr)? */
params:
    %empty     { $$ = NULL; }
  | param_list { $$ = $1; }
  ;
param_list:
    param                { $$ = append_param(NULL, $1); }
  | param_list ',' param { $$ = append_param($1, $3); }
  ;
param:
    IDENT {
      $$ = pool_alloc(P, sizeof(Param));
      *$$ = (Param){.name = $1, .loc = L(@1)};
    }
  | IDENT '=' expr {
      $$ = pool_alloc(P, sizeof(Param));
      *$$ = (Param){.name = $1, .def = $3, .loc = L(@1)};
    }
  ;

stmts:
    %empty     { $$ = NULL; }
  | stmts stmt { $$ = append_stmt($1, $2); }
  ;

/* stmt: IDENT '=' expr | 'shared' IDENT '=' call | 'return' expr
 *     | 'repeat' expr '{' stmts '}'
 *     | 'if' expr '{' stmts '}' ('else' '{' stmts '}')? */
stmt:
    NEWLINE { $$ = NULL; }
  | IDENT '=' expr NEWLINE {
      $$ = pool_alloc(P, sizeof(Stmt));
      *$$ = (Stmt){.kind = ST_ASSIGN, .loc = L(@1), .name = $1, .value = $3};
    }
  | SHARED IDENT '=' call NEWLINE {
      $$ = pool_alloc(P, sizeof(Stmt));
      *$$ = (Stmt){.kind = ST_SHARED, .loc = L(@2), .name = $2, .value = $4};
    }
  | RETURN expr NEWLINE {
      $$ = pool_alloc(P, sizeof(Stmt));
      *$$ = (Stmt){.kind = ST_RETURN, .loc = L(@1), .value = $2};
    }
  | REPEAT expr block_body {
      $$ = pool_alloc(P, sizeof(Stmt));
      *$$ = (Stmt){.kind = ST_REPEAT, .loc = L(@1), .value = $2, .body = $3};
    }
  | IF expr block_body {
      $$ = pool_alloc(P, sizeof(Stmt));
      *$$ = (Stmt){.kind = ST_IF, .loc = L(@1), .value = $2, .body = $3};
    }
  | IF expr block_body ELSE block_body {
      $$ = pool_alloc(P, sizeof(Stmt));
      *$$ = (Stmt){.kind = ST_IF, .loc = L(@1), .value = $2, .body = $3,
                   .else_body = $5};
    }
  | error NEWLINE { $$ = NULL; yyerrok; }
  ;

/* expr: expr '->' chain_target | expr binop expr | unop expr | primary */
expr:
    primary
  | expr ARROW chain_target { $$ = bounded(pc, chain_call(P, $1, $3)); }
  | expr OR expr  { $$ = bounded(pc, new_binary(P, OPR_OR, $1, $3, L(@2))); }
  | expr AND expr { $$ = bounded(pc, new_binary(P, OPR_AND, $1, $3, L(@2))); }
  | expr EQ expr  { $$ = bounded(pc, new_binary(P, OPR_EQ, $1, $3, L(@2))); }
  | expr NE expr  { $$ = bounded(pc, new_binary(P, OPR_NE, $1, $3, L(@2))); }
  | expr '<' expr { $$ = bounded(pc, new_binary(P, OPR_LT, $1, $3, L(@2))); }
  | expr LE expr  { $$ = bounded(pc, new_binary(P, OPR_LE, $1, $3, L(@2))); }
  | expr '>' expr { $$ = bounded(pc, new_binary(P, OPR_GT, $1, $3, L(@2))); }
  | expr GE expr  { $$ = bounded(pc, new_binary(P, OPR_GE, $1, $3, L(@2))); }
  | expr '+' expr { $$ = bounded(pc, new_binary(P, OPR_ADD, $1, $3, L(@2))); }
  | expr '-' expr { $$ = bounded(pc, new_binary(P, OPR_SUB, $1, $3, L(@2))); }
  | expr '*' expr { $$ = bounded(pc, new_binary(P, OPR_MUL, $1, $3, L(@2))); }
  | expr '/' expr { $$ = bounded(pc, new_binary(P, OPR_DIV, $1, $3, L(@2))); }
  | expr '%' expr { $$ = bounded(pc, new_binary(P, OPR_MOD, $1, $3, L(@2))); }
  | '-' expr %prec UNARY { $$ = bounded(pc, new_binary(P, OPR_NEG, $2, NULL, L(@1))); }
  | '!' expr %prec UNARY { $$ = bounded(pc, new_binary(P, OPR_NOT, $2, NULL, L(@1))); }
  ;

/* chain_target: IDENT | call    (x -> relu, x -> conv(64, k=3)) */
chain_target:
    IDENT {
      $$ = new_expr(P, EX_CALL, L(@1));
      $$->name = $1;
    }
  | call
  ;

/* primary: INT | REAL | BOOL | SHAPE | IDENT | primary '.' IDENT | call
 *        | '(' expr ')' */
primary:
    INT  { $$ = new_expr(P, EX_INT, L(@1)); $$->ival = $1; }
  | REAL { $$ = new_expr(P, EX_REAL, L(@1)); $$->rval = $1; }
  | BOOL { $$ = new_expr(P, EX_BOOL, L(@1)); $$->ival = $1; }
  | SHAPE {
      $$ = new_expr(P, EX_SHAPE, L(@1));
      $$->ndims = $1.ndims;
      for (int i = 0; i < $1.ndims && i < MAX_SHAPE_DIMS; i++)
        $$->dims[i] = $1.dims[i];
    }
  | IDENT { $$ = new_expr(P, EX_NAME, L(@1)); $$->name = $1; }
  | primary '.' IDENT {
      $$ = new_expr(P, EX_ATTR, L(@3));
      $$->lhs = $1;
      $$->name = $3;
    }
  | call
  | '(' expr ')' { $$ = $2; }
  ;

/* call: IDENT '(' (arg (',' arg)*)? ')' ; arg: expr | IDENT '=' expr */
call:
    IDENT '(' args ')' {
      $$ = new_expr(P, EX_CALL, L(@1));
      $$->name = $1;
      $$->args = $3;
    }
  ;
args:
    %empty   { $$ = NULL; }
  | arg_list { $$ = $1; }
  | arg_list ',' { $$ = $1; }
  ;
arg_list:
    arg              { $$ = append_arg(NULL, $1); }
  | arg_list ',' arg { $$ = append_arg($1, $3); }
  ;
arg:
    expr {
      $$ = pool_alloc(P, sizeof(Arg));
      *$$ = (Arg){.value = $1, .loc = $1->loc};
    }
  | IDENT '=' expr {
      $$ = pool_alloc(P, sizeof(Arg));
      *$$ = (Arg){.name = $1, .value = $3, .loc = L(@1)};
    }
  ;

%%

void netc_yyerror(NETC_YYLTYPE *lloc, void *scanner, struct ParseCtx *pc,
                  const char *msg) {
  (void)scanner;
  struct LexState *ls = pc->lex;
  /* Bison's stack overflows before `bounded` sees a long chain of unary
   * operators; it is the same limit to the user. */
  if (!strcmp(msg, "memory exhausted"))
    msg = "expression nested too deeply";
  if (!diag_error(pc->diag, L(*lloc), "%s", msg))
    return;
  bool at_end = ls->at_eof;
  /* The commonest mistakes: a bracket left open (which makes the newlines
   * after a '(' spaces), and a line ending in an operator or '->' (which
   * continues the statement on the next line). Point at the culprit. */
  Loc open = ls->depth > 0 ? ls->open[ls->depth - 1] : (Loc){-1, 0, 0};
  if (ls->parens > 0 && (open.line < lloc->first_line || at_end))
    diag_note(pc->diag, open, "this '(' is not closed");
  else if (ls->depth > 0 && at_end) /* a '{' spans lines by design */
    diag_note(pc->diag, open, "this '{' is not closed");
  else if (ls->cont.line > 0 && ls->cont.line == lloc->first_line - 1)
    diag_note(pc->diag, ls->cont, "this line ends with an operator, so the "
                                  "statement goes on to the next line");
  /* Close open '(' so that error recovery finds a line end. */
  if (ls->parens > 0) {
    ls->depth = ls->depth > ls->parens ? ls->depth - ls->parens : 0;
    ls->parens = 0;
  }
}

#define YYSTYPE NETC_YYSTYPE
#define YYLTYPE NETC_YYLTYPE
#include "lex.h"

Decl *parse_file(Diag *d, Pool *pool, int file) {
  struct LexState ls = {.diag = d, .pool = pool, .file = file, .line = 1,
                        .col = 1};
  struct ParseCtx pc = {.diag = d, .pool = pool, .file = file, .lex = &ls};
  yyscan_t scanner;
  if (netc_yylex_init_extra(&ls, &scanner)) {
    fprintf(stderr, "netc: cannot start the scanner\n");
    exit(1);
  }
  SourceFile *f = &d->files[file];
  YY_BUFFER_STATE buf = netc_yy_scan_bytes(f->text, (int)f->len, scanner);
  netc_yyparse(scanner, &pc);
  netc_yy_delete_buffer(buf, scanner);
  netc_yylex_destroy(scanner);
  return pc.decls;
}
