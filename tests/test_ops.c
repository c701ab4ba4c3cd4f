/* test_ops.c - every op of the graph: first and second derivatives against
 * central finite differences (tests/gradcheck.h), including the internal ops
 * that gradient rules emit (conv2d_dx, maxpool2d_scatter, ...), so that the
 * gradient of any gradient is checked too.
 *
 * Tolerances: float32 central differences with h <= 1e-2 on O(1) values:
 * |analytic - numeric| <= atol + rtol |numeric|, atol 2e-3 and rtol 2e-2 by
 * default (doubled for second order), tighter where the op is linear. */
#include "core/graph_impl.h"
#include "gradcheck.h"

#define X0 x[0]
#define X1 x[1]
#define X2 x[2]

#define UNARY(fn, expr)                                                         \
    static mela_node fn(mela_graph *g, const mela_node *x, const mela_node *f, void *c) \
    {                                                                           \
        return expr;                                                            \
    }

UNARY(b_add, mela_add(g, X0, X1))
UNARY(b_sub, mela_sub(g, X0, X1))
UNARY(b_mul, mela_mul(g, X0, X1))
UNARY(b_div, mela_div(g, X0, X1))
UNARY(b_scale, mela_scale(g, X0, -1.7f))
UNARY(b_adds, mela_add_scalar(g, X0, 0.3f))
UNARY(b_neg, mela_neg(g, X0))
UNARY(b_relu, mela_relu(g, X0))
UNARY(b_leaky, mela_leaky_relu(g, X0, 0.1f))
UNARY(b_sigmoid, mela_sigmoid(g, X0))
UNARY(b_tanh, mela_tanh(g, X0))
UNARY(b_exp, mela_exp(g, X0))
UNARY(b_log, mela_log(g, X0))
UNARY(b_abs, mela_abs(g, X0))
UNARY(b_square, mela_square(g, X0))
UNARY(b_sqrt, mela_sqrt(g, X0))
UNARY(b_softplus, mela_softplus(g, mela_scale(g, X0, 4.0f)))
/* Piecewise-constant and mask ops, multiplied by a smooth factor so that the
 * second derivative is not trivially zero. */
UNARY(b_sign, mela_mul(g, op_sign(g, X0), mela_square(g, X0)))
UNARY(b_relu_grad, op_relu_grad(g, X0, mela_square(g, X1), 0.2f))
UNARY(b_sum_to, mela_sum_to(g, mela_square(g, X0), MELA_SHAPE(1, 3, 1, 1)))
UNARY(b_sum_to2, mela_sum_to(g, mela_square(g, X0), MELA_SHAPE(4, 1)))
UNARY(b_broadcast, mela_mul(g, mela_broadcast_to(g, X0, MELA_SHAPE(2, 3, 4)), X1))
UNARY(b_sum, mela_mul(g, mela_sum(g, X0), mela_sum(g, X0)))
UNARY(b_mean, mela_square(g, mela_mean(g, X0)))
UNARY(b_sum_axis, mela_square(g, mela_sum_axis(g, X0, 1)))
UNARY(b_mean_axis, mela_square(g, mela_mean_axis(g, X0, -1)))
UNARY(b_reshape, mela_mul(g, mela_reshape(g, X0, MELA_SHAPE(6, 2)), X1))
UNARY(b_flatten, mela_square(g, mela_flatten(g, X0)))
UNARY(b_concat, mela_square(g, mela_concat(g, X0, X1)))
UNARY(b_slice, mela_square(g, mela_slice(g, X0, 1, 2)))
UNARY(b_pad, mela_mul(g, op_pad(g, X0, 1, 5), X1))
UNARY(b_mm00, mela_matmul(g, X0, X1, 0, 0))
UNARY(b_mm01, mela_matmul(g, X0, X1, 0, 1))
UNARY(b_mm10, mela_matmul(g, X0, X1, 1, 0))
UNARY(b_mm11, mela_matmul(g, X0, X1, 1, 1))
UNARY(b_linear, mela_tanh(g, mela_linear(g, X0, X1, X2)))
UNARY(b_conv, mela_conv2d(g, X0, X1, X2, 1, 1))
UNARY(b_conv_s2, mela_conv2d(g, X0, X1, MELA_NONE, 2, 0))
UNARY(b_conv_sq, mela_square(g, mela_conv2d(g, X0, X1, MELA_NONE, 2, 1)))
UNARY(b_conv_dx, op_conv_dx(g, X0, X1, MELA_SHAPE(2, 3, 5, 5), 1, 1))
UNARY(b_conv_dw, op_conv_dw(g, X0, X1, MELA_SHAPE(4, 3, 3, 3), 1, 1))
UNARY(b_maxpool, mela_maxpool2d(g, mela_square(g, X0), 2, 2))
UNARY(b_maxpool3, mela_maxpool2d(g, mela_square(g, X0), 3, 1))
UNARY(b_mp_scatter, op_maxpool_scatter(g, X0, mela_square(g, X1), 2, 2))
UNARY(b_mp_gather, op_maxpool_gather(g, X0, mela_square(g, X1), 2, 2))
UNARY(b_avgpool, mela_avgpool2d(g, mela_square(g, X0), 2, 1))
UNARY(b_avgpool_dx, op_avgpool_dx(g, mela_square(g, X0), MELA_SHAPE(2, 3, 5, 5), 2, 1))
UNARY(b_gap, mela_square(g, mela_global_avgpool(g, X0)))
UNARY(b_pad2d, mela_square(g, mela_pad2d(g, X0, 0, 1, 0, 1)))
UNARY(b_crop2d, mela_mul(g, mela_pad2d(g, X0, -1, 2, 1, -2), X1))
/* TensorFlow's 'SAME' convolution of stride 2, squared: pad then conv */
UNARY(b_same_conv, mela_square(g, mela_conv2d(g, mela_pad2d(g, X0, 0, 1, 0, 1), X1, MELA_NONE, 2, 0)))
UNARY(b_bn4, mela_batchnorm(g, X0, X1, X2, 1e-5f))
UNARY(b_bn2, mela_batchnorm(g, X0, X1, X2, 1e-5f))
UNARY(b_bn_norm, mela_mul(g, op_bn_norm(g, X0, 1e-5f), X1))
UNARY(b_bn_rstd, mela_square(g, op_bn_rstd(g, X0, 1e-5f)))
UNARY(b_bn_dx, mela_tanh(g, op_bn_dx(g, X0, X1, X2)))
UNARY(b_logsm, mela_log_softmax(g, X0))
UNARY(b_softmax, mela_softmax(g, X0))
UNARY(b_ce, mela_cross_entropy(g, X0, f[0]))
UNARY(b_bce, mela_bce_with_logits(g, mela_scale(g, X0, 3.0f), f[0]))
UNARY(b_mse, mela_mse(g, X0, X1))
UNARY(b_sqdist, mela_sqdist(g, X0, X1))
UNARY(b_cosine, mela_cosine(g, X0, X1, 1e-6f))

#define S(...) MELA_SHAPE(__VA_ARGS__)

int main(void)
{
    static const float labels[4] = {2, 0, 4, 1};
    static const float targets[12] = {0, 1, 1, 0, 0.5f, 0.2f, 1, 0, 0.9f, 0, 1, 0.3f};
    const double A = 2e-3, R = 2e-2;
    struct {
        gc_build f;
        gc_spec s;
    } cases[] = {
        {b_add, {"add (2,3,4,5)+(1,3,1,1)", 2, {S(2, 3, 4, 5), S(1, 3, 1, 1)}, .second = 1, .atol = A, .rtol = R}},
        {b_add, {"add (3,4)+(4)", 2, {S(3, 4), S(4)}, .second = 1, .atol = A, .rtol = R}},
        {b_sub, {"sub (2,3)-(2,1)", 2, {S(2, 3), S(2, 1)}, .second = 1, .atol = A, .rtol = R}},
        {b_mul, {"mul (2,3,4)*(3,1)", 2, {S(2, 3, 4), S(3, 1)}, .second = 1, .atol = A, .rtol = R}},
        {b_mul, {"mul same", 2, {S(3, 5), S(3, 5)}, .second = 1, .atol = A, .rtol = R}},
        {b_div, {"div (2,3)/(3)", 2, {S(2, 3), S(3)}, {-1, 0.5f}, {1, 2}, .second = 1, .atol = A, .rtol = R}},
        {b_div, {"div (1)/(2,2)", 2, {S(1), S(2, 2)}, {-1, 0.5f}, {1, 2}, .second = 1, .atol = A, .rtol = R}},
        {b_scale, {"scale", 1, {S(7)}, .second = 1, .atol = A, .rtol = R}},
        {b_adds, {"add_scalar", 1, {S(7)}, .second = 1, .atol = A, .rtol = R}},
        {b_neg, {"neg", 1, {S(7)}, .second = 1, .atol = A, .rtol = R}},
        {b_relu, {"relu", 1, {S(3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_leaky, {"leaky_relu", 1, {S(3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_sigmoid, {"sigmoid", 1, {S(3, 4)}, {-3}, {3}, .second = 1, .atol = A, .rtol = R}},
        {b_tanh, {"tanh", 1, {S(3, 4)}, {-2}, {2}, .second = 1, .atol = A, .rtol = R}},
        {b_exp, {"exp", 1, {S(3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_log, {"log", 1, {S(3, 4)}, {0.5f}, {3}, .second = 1, .atol = A, .rtol = R}},
        {b_abs, {"abs", 1, {S(3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_square, {"square", 1, {S(3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_sqrt, {"sqrt", 1, {S(3, 4)}, {0.5f}, {3}, .second = 1, .atol = A, .rtol = R}},
        {b_softplus, {"softplus", 1, {S(3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_sign, {"sign (times x^2)", 1, {S(3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_relu_grad, {"relu_grad", 2, {S(3, 4), S(3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_sum_to, {"sum_to (1,3,1,1)", 1, {S(2, 3, 4, 2)}, .second = 1, .atol = A, .rtol = R}},
        {b_sum_to2, {"sum_to (4,1)", 1, {S(4, 5)}, .second = 1, .atol = A, .rtol = R}},
        {b_broadcast, {"broadcast_to", 2, {S(3, 1), S(2, 3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_sum, {"sum", 1, {S(2, 3)}, .second = 1, .atol = A, .rtol = R}},
        {b_mean, {"mean", 1, {S(2, 3)}, .second = 1, .atol = A, .rtol = R}},
        {b_sum_axis, {"sum_axis", 1, {S(2, 3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_mean_axis, {"mean_axis", 1, {S(2, 3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_reshape, {"reshape", 2, {S(3, 4), S(6, 2)}, .second = 1, .atol = A, .rtol = R}},
        {b_flatten, {"flatten", 1, {S(2, 2, 2, 2)}, .second = 1, .atol = A, .rtol = R}},
        {b_concat, {"concat", 2, {S(2, 3), S(1, 3)}, .second = 1, .atol = A, .rtol = R}},
        {b_slice, {"slice", 1, {S(4, 3)}, .second = 1, .atol = A, .rtol = R}},
        {b_pad, {"pad", 2, {S(2, 3), S(5, 3)}, .second = 1, .atol = A, .rtol = R}},
        {b_mm00, {"matmul", 2, {S(3, 4), S(4, 2)}, .second = 1, .atol = A, .rtol = R}},
        {b_mm01, {"matmul b^T", 2, {S(3, 4), S(2, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_mm10, {"matmul a^T", 2, {S(4, 3), S(4, 2)}, .second = 1, .atol = A, .rtol = R}},
        {b_mm11, {"matmul a^T b^T", 2, {S(4, 3), S(2, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_linear, {"linear+tanh", 3, {S(3, 4), S(2, 4), S(2)}, .second = 1, .atol = A, .rtol = R}},
        {b_conv, {"conv2d s1 p1 +bias", 3, {S(2, 3, 5, 5), S(4, 3, 3, 3), S(4)}, .second = 1, .atol = A, .rtol = R}},
        {b_conv_s2, {"conv2d s2 p0", 2, {S(2, 2, 6, 5), S(3, 2, 2, 3)}, .second = 1, .atol = A, .rtol = R}},
        {b_conv_sq, {"conv2d s2 p1 squared", 2, {S(1, 2, 5, 5), S(2, 2, 3, 3)}, .second = 1, .atol = A, .rtol = R}},
        {b_conv_dx, {"conv2d_dx", 2, {S(2, 4, 5, 5), S(4, 3, 3, 3)}, .second = 1, .atol = A, .rtol = R}},
        {b_conv_dw, {"conv2d_dw", 2, {S(2, 3, 5, 5), S(2, 4, 5, 5)}, .second = 1, .atol = A, .rtol = R}},
        {b_maxpool, {"maxpool2d k2 s2", 1, {S(2, 2, 5, 4)}, {0.1f}, {2}, .second = 1, .atol = A, .rtol = R}},
        {b_maxpool3, {"maxpool2d k3 s1", 1, {S(1, 2, 5, 5)}, {0.1f}, {2}, .second = 1, .atol = A, .rtol = R}},
        {b_mp_scatter, {"maxpool2d_scatter", 2, {S(2, 2, 4, 4), S(2, 2, 2, 2)}, .second = 1, .atol = A, .rtol = R}},
        {b_mp_gather, {"maxpool2d_gather", 2, {S(2, 2, 4, 4), S(2, 2, 4, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_avgpool, {"avgpool2d k2 s1", 1, {S(2, 3, 4, 5)}, .second = 1, .atol = A, .rtol = R}},
        {b_avgpool_dx, {"avgpool2d_dx", 1, {S(2, 3, 4, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_gap, {"global_avgpool", 1, {S(2, 3, 3, 2)}, .second = 1, .atol = A, .rtol = R}},
        {b_pad2d, {"pad2d (0,1,0,1) squared", 1, {S(2, 3, 4, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_crop2d, {"pad2d crop and pad", 2, {S(2, 2, 4, 5), S(2, 2, 5, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_same_conv, {"pad2d + conv2d s2 squared", 2, {S(2, 2, 4, 4), S(3, 2, 3, 3)}, .second = 1, .atol = A, .rtol = R}},
        {b_bn4, {"batchnorm (N,C,H,W)", 3, {S(3, 2, 3, 2), S(2), S(2)}, .second = 1, .atol = 5e-3, .rtol = 3e-2}},
        {b_bn2, {"batchnorm (N,C)", 3, {S(5, 3), S(3), S(3)}, .second = 1, .atol = 5e-3, .rtol = 3e-2}},
        {b_bn_norm, {"bn_normalize (N,C,H,W)", 2, {S(3, 2, 2, 2), S(3, 2, 2, 2)}, .second = 1, .atol = 5e-3, .rtol = 3e-2}},
        {b_bn_norm, {"bn_normalize (N,C)", 2, {S(4, 3), S(4, 3)}, .second = 1, .atol = 5e-3, .rtol = 3e-2}},
        {b_bn_rstd, {"bn_rstd", 1, {S(3, 2, 2, 2)}, .second = 1, .atol = 5e-3, .rtol = 3e-2}},
        {b_bn_dx, {"bn_dx (N,C,H,W)", 3, {S(3, 2, 2, 2), S(3, 2, 2, 2), S(1, 2, 1, 1)}, .second = 1, .atol = 5e-3, .rtol = 3e-2}},
        {b_bn_dx, {"bn_dx (N,C)", 3, {S(4, 3), S(4, 3), S(1, 3)}, .second = 1, .atol = 5e-3, .rtol = 3e-2}},
        {b_logsm, {"log_softmax", 1, {S(3, 5)}, {-2}, {2}, .second = 1, .atol = A, .rtol = R}},
        {b_softmax, {"softmax", 1, {S(3, 5)}, {-2}, {2}, .second = 1, .atol = A, .rtol = R}},
        {b_ce, {"cross_entropy", 1, {S(4, 5)}, {-2}, {2}, 1, {S(4)}, {labels}, .second = 1, .atol = A, .rtol = R}},
        {b_bce, {"bce_with_logits", 1, {S(3, 4)}, .nfixed = 1, .fshape = {S(3, 4)}, .fdata = {targets}, .second = 1, .atol = A, .rtol = R}},
        {b_mse, {"mse", 2, {S(3, 4), S(3, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_sqdist, {"sqdist", 2, {S(3, 4), S(5, 4)}, .second = 1, .atol = A, .rtol = R}},
        {b_cosine, {"cosine", 2, {S(3, 4), S(2, 4)}, .second = 1, .atol = A, .rtol = R}},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        int ok = gradcheck(cases[i].f, &cases[i].s, 1000 + i);
        printf("%-32s %s\n", cases[i].s.name, ok ? "ok" : "FAILED");
    }
    return check_finish();
}
