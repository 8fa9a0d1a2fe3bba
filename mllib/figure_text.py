"""Figure text in the reader's language: one dictionary of labels, applied when a figure is drawn.

The notebooks draw their figures with English titles, axis labels, legends and annotations. A
translated edition does not get a second copy of that code: its setup cell calls
``install("zh")``, and from then on every figure, just before it is rendered (shown inline or
saved), has each text whose English string is in :data:`LABELS` replaced by its translation:
titles, suptitles, axis labels, tick labels, legend entries and free text. Strings the dictionary
does not know stay as they are.

Glyphs first: a Chinese label drawn with a font that has no Chinese glyphs renders as empty boxes.
:func:`missing_glyphs` names the characters a font lacks, and :func:`cjk_font` finds an installed font
that has them all. ``install`` translates only when such a font exists (and makes it the first
choice); otherwise it says so in one line and leaves the figures in English, never boxes.

    >>> missing_glyphs("meta-step", "DejaVu Sans")
    ''
    >>> missing_glyphs("元步", "DejaVu Sans")
    '元步'
"""
from __future__ import annotations

import functools
import re

import matplotlib
import matplotlib.ticker
from matplotlib import font_manager
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.ft2font import FT2Font

#: English figure text -> translation, per language. Keys are exact strings; a key with ``{}`` is a
#: pattern whose ``{}`` parts (numbers, names) are carried over in order.
LABELS: dict[str, dict[str, str]] = {
    "zh": {
        # mllib/plots.py (plot_meta_training, plot_learning_curve: notebooks 01, 04, 05)
        "meta-step": "元步",
        "query loss after adaptation": "适应后的查询损失",
        "meta-training (moving average of {})": "元训练（{}步滑动平均）",
        "query loss (training tasks)": "查询损失（训练任务）",
        "training tasks (adapted)": "训练任务（适应后）",
        "validation": "验证",
        "chance": "随机猜测",
        "query accuracy": "查询准确率",
        # 01_learning_bias.ipynb
        "x": "x",
        "y": "y",
        "the task's function": "任务的函数",
        "K={} support points": "K={}个支持点",
        "task {}: A={}, phase={}": "任务{}：A={}，相位={}",
        "least-squares polynomial (clipped at ±6)": "最小二乘多项式（截断于±6）",
        "degree {}": "次数{}",
        "query MSE after 1 step": "1步后的查询MSE",
        "true": "真实函数",
        "polynomial, degree 5": "多项式，次数5",
        "random start": "随机起点",
        "pre-trained start": "预训练起点",
        "meta-learned start": "元学习起点",
        "least squares": "最小二乘",
        "0 steps": "0步",
        "1 step": "1步",
        "10 steps": "10步",
        "50 steps": "50步",
        "mean task -1.62 cos x": "平均任务（-1.62 cos x）",
        "meta-learned start (MAML)": "元学习起点（MAML）",
        "best polynomial degree (mean, degree {})": "最佳次数的多项式（平均，次数{}）",
        "predicting 0 everywhere": "处处预测0",
        "gradient steps on the new task": "在新任务上的梯度步数",
        "mean query MSE over {} tasks": "{}个任务上的平均查询MSE",
        # 02_task_sampling.ipynb
        "input x": "输入x",
        "output y": "输出y",
        "Four tasks from p(T): one family, different functions": "来自p(T)的四个任务：同一任务族，不同的函数",
        "support (K=10)": "支持集（K=10）",
        "query": "查询集",
        "task {}: A={}, φ={}": "任务{}：A={}，φ={}",
        "One class = one character, drawn by different people: {}": "一个类别=一个字符，由不同的人书写：{}",
        "drawer {}": "书写者{}",
        "support": "支持集",
        "label {}": "标签{}",
        "y={}": "y={}",
        "class {}\n(k={}, {}°)": "类别{}\n（k={}，{}°）",
        "A 5-way 1-shot task: one support image per class (left), query images (right)":
            "一个5类1样本任务：每个类别一幅支持图像（左），查询图像（右）",
        "Task 1 of the meta-batch ({} query images per class)": "元批量中的任务1（每个类别{}幅查询图像）",
        # 03_inner_loop.ipynb
        "inner steps k": "内循环步数k",
        "query MSE (mean of {} tasks)": "查询MSE（{}个任务的平均）",
        "meta-learned start, {} step": "元学习起点，{}步",
        "meta-learned start, {} steps": "元学习起点，{}步",
        "α = {} (diverged: clipped at 20, ends at nan)": "α = {}（发散：截断于20，最终为nan）",
        "α = {} (clipped at 20)": "α = {}（截断于20）",
        "α = {}": "α = {}",
        # 04_outer_loop.ipynb
        "inner learning rate α": "内循环学习率α",
        "relative error of FOMAML": "FOMAML的相对误差",
        "First order drops a term of size ∝ α": "一阶近似丢掉一个大小∝α的项",
        "seconds per meta-gradient": "每个元梯度的秒数",
        "time (1 task)": "时间（1个任务）",
        "MB kept for the outer backward": "为外循环反向传播保留的MB",
        "memory (1 task)": "内存（1个任务）",
        "Cost of the outer loop on {}: 5-way 1-shot, {} filters": "外循环在{}上的开销：5类1样本，{}个滤波器",
        "cpu ({} thread)": "CPU（{}个线程）",
        "cpu ({} threads)": "CPU（{}个线程）",
        "maml": "maml",
        "fomaml": "fomaml",
        "reptile": "reptile",
        "inner steps": "内循环步数",
        "MAML: unrolled through k steps": "MAML：展开k步",
        "iMAML: CG at φ after k steps": "iMAML：在k步后的φ处做CG",
        "no Hessian term: ∇L_ts(φ*)": "无黑塞项：∇L_ts(φ*)",
        "relative error against g at φ*": "相对φ*处的g的误差",
        "(a) meta-gradient error": "（a）元梯度误差",
        "MAML (unrolled)": "MAML（展开）",
        "iMAML (implicit, CG)": "iMAML（隐式，CG）",
        "peak graph memory (KB)": "计算图峰值内存（KB）",
        "(b) memory of one task's meta-gradient": "（b）一个任务的元梯度所需内存",
        "iMAML against MAML on one sinusoid task: λ = {}, α = {}, {} parameters":
            "在一个正弦任务上比较iMAML与MAML：λ = {}，α = {}，{}个参数",
        "MAML meta-training on sinusoids": "正弦任务上的MAML元训练",
        "query MSE after 1 inner step": "1步内循环后的查询MSE",
        "SGD steps on the support set": "在支持集上的SGD步数",
        "query MSE (300 new tasks)": "查询MSE（300个新任务）",
        "Adapting from each start": "从各个起点适应",
        "MAML start": "MAML起点",
        "true function": "真实函数",
        "{} support points": "{}个支持点",
        "after {} step": "{}步后",
        "after {} steps": "{}步后",
        "task {} (x: its optimum)": "任务{}（x：其最优点）",
        "step leaves the view (overshoot)": "这一步越出视图（越过头）",
        "MAML start while meta-training": "元训练中的MAML起点",
        "MAML start before meta-training": "元训练前的MAML起点",
        "joint-training start": "联合训练起点",
        "amplitude a": "振幅a",
        "phase φ": "相位φ",
        "one inner step of size α = {}": "步长α = {}的一步内循环",
        # 05_maml_omniglot.ipynb
        "training tasks (1 inner step)": "训练任务（1步内循环）",
        "validation: {} inner step": "验证：{}步内循环",
        "validation: {} inner steps": "验证：{}步内循环",
        "train from scratch on the support set (none)": "在支持集上从零训练（无）",
        "pre-train + fine-tune head (weak) ({} minibatches)": "预训练+微调分类头（弱）（{}个小批量）",
        "prototypical network ({} meta-steps x {})": "原型网络（{}元步×{}）",
        "MAML, live run ({} meta-steps x {})": "MAML，现场运行（{}元步×{}）",
        "MAML, learned head, quick ({} meta-steps x {})": "MAML，元学习的分类头，quick（{}元步×{}）",
        "MAML, zero head, quick ({} meta-steps x {})": "MAML，零分类头，quick（{}元步×{}）",
        "MAML, learned head, long ({} meta-steps x {})": "MAML，元学习的分类头，long（{}元步×{}）",
        "MAML, zero head, laptop ({} meta-steps x {})": "MAML，零分类头，laptop（{}元步×{}）",
        "5-way 1-shot test accuracy (%), 95% CI": "5类1样本测试准确率（%），95%置信区间",
        "maml split, test characters as drawn; training budget in each label (meta-steps x tasks per step); "
        "bar colour = batch-norm mode": "maml划分，测试字符按原样；每个标签中为训练预算（元步×每步任务数）；"
                                       "条形颜色=批归一化模式",
        "bn=batch (transductive)": "bn=batch（直推式）",
        "bn=support (support statistics)": "bn=support（支持集统计量）",
        "support images per class at test time": "测试时每个类别的支持图像数",
        "5-way test accuracy (%), 95% CI": "5类测试准确率（%），95%置信区间",
        "bn=batch; maml split, characters as drawn; 1,000 meta-steps each": "bn=batch；maml划分，字符按原样；各1,000元步",
        "MAML": "MAML",
        "ProtoNet": "ProtoNet",
        "ProtoNet, 1 shot (no inner loop)": "ProtoNet，1样本（无内循环）",
        "MAML, 1 shot": "MAML，1样本",
        "inner SGD steps at test time": "测试时的内循环SGD步数",
        "5-way 1-shot test accuracy (%)": "5类1样本测试准确率（%）",
        # 06_learning_the_learning_algorithm.ipynb ("inner steps on the 10 support points": with 07's below)
        "anil": "anil",
        "metasgd": "metasgd",
        "{}: diverged (drawn at 100)": "{}：发散（画在100处）",
        "query MSE (clipped at 100)": "查询MSE（截断于100）",
        "Adapting from each meta-learned start (200 new tasks)": "从各个元学习起点适应（200个新任务）",
        "learned rates": "学到的学习率",
        "initial rate {}": "初始学习率{}",
        "learned inner learning rate of a weight": "一个权重学到的内循环学习率",
        "number of weights": "权重个数",
        "Meta-SGD's learned per-weight inner learning rates, one panel per tensor":
            "Meta-SGD学到的逐权重内循环学习率，每个张量一个子图",
        "head": "分类头",
        "body": "主体",
        "layer": "层",
        "relative weight change": "权重的相对变化",
        "How much MAML's inner loop (5 steps) changes each layer": "MAML的内循环（5步）使每一层改变多少",
        "test accuracy (%), 95% interval": "测试准确率（%），95%区间",
        "The family, one budget ({} s idle)": "同一预算下的算法族（空闲时{}秒）",
        "chance (5-way)": "随机猜测（5类）",
        "not run": "未运行",
        "test accuracy (%), bn=batch": "测试准确率（%），bn=batch",
        "test accuracy (%), maml split, bn=batch": "测试准确率（%），maml划分，bn=batch",
        "{}\n± {}": "{}\n± {}",
        "test accuracy (%)": "测试准确率（%）",
        "inner learning rate": "内循环学习率",
        "inner steps (train = test)": "内循环步数（训练=测试）",
        "MAML sweep, {} meta-steps, maml split": "MAML超参数扫描，{}元步，maml划分",
        "plain\n2-step": "普通\n2步",
        "+ multi-\nstep loss": "+多步\n损失",
        "+ per-step\nrates": "+逐层逐步\n学习率",
        "+ per-step\nbatch norm": "+逐步\n批归一化",
        "MAML++'s tricks alone, {} meta-steps": "MAML++的技巧，单独加入（{}元步）",
        # 07_learning_the_update_rule.ipynb
        "meta-step 1: the rule is still SGD": "元步1：规则仍是SGD",
        "mean query MSE along the unroll": "沿展开过程的平均查询MSE",
        "Meta-training the update rule (live, 16 fixed tasks)": "元训练更新规则（现场运行，16个固定任务）",
        # an exact key (SHOTS == 10 is asserted), since the pattern "{} support points" (04) comes first
        "inner steps on the 10 support points": "在10个支持点上的内循环步数",
        "query MSE ({} new tasks)": "查询MSE（{}个新任务）",
        "The same new tasks, the same 5 steps": "相同的新任务，相同的5步",
        "SGD (tuned rate {})": "SGD（调好的学习率{}）",
        "Adam (tuned rate {})": "Adam（调好的学习率{}）",
        "learned optimizer, random start": "学习型优化器，随机起点",
        "MAML start + SGD ({})": "MAML起点+SGD（{}）",
        "Meta-SGD (start + learned rates)": "Meta-SGD（起点+学到的学习率）",
        "learned optimizer, MAML start": "学习型优化器，MAML起点",
        "learned optimizer, random start: mean off the plot from step {} ({} of {} runs diverge)":
            "学习型优化器，随机起点：从第{}步起均值超出图的范围（{}/{}次运行发散）",
        "learned optimizer, MAML start: mean off the plot from step {} ({} of {} runs diverge)":
            "学习型优化器，MAML起点：从第{}步起均值超出图的范围（{}/{}次运行发散）",
        "MAML start + SGD: mean off the plot from step {} ({} of {} runs diverge)":
            "MAML起点+SGD：从第{}步起均值超出图的范围（{}/{}次运行发散）",
        "{}: mean off the plot from step {} ({} of {} runs diverge)": "{}：从第{}步起均值超出图的范围（{}/{}次运行发散）",
        "trained horizon": "训练时的视界",
        "mean query MSE ({} tasks)": "平均查询MSE（{}个任务）",
        "Beyond the horizon the rules were trained for": "超出规则训练时的视界",
        "in-context": "上下文学习器",
        "{} support point": "{}个支持点",
        "in-context (one forward pass)": "上下文学习器（一次前向传播）",
        "MAML start + {} SGD steps": "MAML起点+{}步SGD",
        "support points": "支持点数",
        "query MSE, {} tasks\n(bars: 1.96 standard errors)": "查询MSE，{}个任务\n（误差条：1.96个标准误）",
        "More context, better predictions": "上下文越多，预测越好",
        "true (amplitude {})": "真实函数（振幅{}）",
        "range of training amplitudes": "训练时的振幅范围",
        "An off-family task": "一个任务族之外的任务",
        # 08_meta_reinforcement_learning.ipynb
        "MAML policy, before adapting": "MAML策略，适应之前",
        "MAML policy, after 1 step": "MAML策略，1步后",
        "pre-trained on all goals (no step)": "在全部目标上预训练（不走梯度步）",
        "training iteration": "训练迭代",
        "mean return (moving average of {})": "平均回报（{}次迭代的滑动平均）",
        "Returns during (meta-)training, on the training goals of each iteration": "（元）训练中的回报，在每次迭代的训练目标上",
        "random init": "随机初始化",
        "pre-trained + fine-tuning": "预训练+微调",
        "pre-trained, step size alpha": "预训练，步长alpha",
        "stay at the start": "停在起点",
        "oracle (knows the goal)": "先知（知道目标）",
        "policy-gradient steps on the new goal": "在新目标上的策略梯度步数",
        "mean return (95% CI)": "平均回报（95%置信区间）",
        "Adapting to {} new goals\nprotocol: {} episodes per step, step size tuned per start; {} training iterations "
        "each; no batch norm": "适应{}个新目标\n协议：每步{}个回合，步长按起点分别调节；各训练{}次迭代；无批归一化",
        "before adapting": "适应之前",
        "goal": "目标",
        "start": "起点",
        "new goal {}": "新目标{}",
        "x position": "x位置",
        "y position": "y位置",
        "RL^2: one trial, no gradient": "RL²：一次试验，无梯度",
        "MAML (k steps)": "MAML（k步）",
        "pre-trained + fine-tuning (k steps)": "预训练+微调（k步）",
        "episode on the new goal (MAML: a step after every 20)": "新目标上的回合（MAML：每20个回合后走一步）",
        "{} new goals; protocol: 80 episodes per goal, same goals for all\ntraining: RL^2 {} iterations, MAML and "
        "pre-training {} iterations; no batch norm": "{}个新目标；协议：每个目标80个回合，各方法的目标相同\n"
                                                     "训练：RL²共{}次迭代，MAML和预训练各{}次迭代；无批归一化",
        # 09_meta_learning_today.ipynb
        'trained with fixed labels': '用固定标签训练',
        'trained with permuted labels': '用置换标签训练',
        'trained with {}': '用{}训练',
        'chance (20%)': '随机猜测（20%）',
        'before adaptation': '适应之前',
        'after 1 inner step': '1步内循环之后',
        'training classes (their own labelling)': '训练类别（各自原来的标签）',
        'new classes (permuted labels)': '新类别（置换标签）',
        'test-time adaptation': '测试时的适应',
        'query accuracy (%), 95% CI': '查询准确率（%），95%置信区间',
        'MAML, no batch norm, budget {} meta-steps; test protocol: {} tasks, {}-way {}-shot': 'MAML，无批归一化，预算{}元步；测试协议：{}个任务，{}类{}样本',
        'ridge': '岭回归',
        '1 GD step (rate {}, tuned)': '1步梯度下降（学习率{}，调优）',
        '2 GD steps (rate {}, tuned)': '2步梯度下降（学习率{}，调优）',
        '1 GD step at eta = {} (read from the weights)': '学习率η = {}的1步梯度下降（从权重读出）',
        '1-layer transformer': '1层transformer',
        '2-layer transformer': '2层transformer',
        'number of examples in the prompt, n (d = 5: dotted line)': '提示中的样本数n（d = 5：虚线）',
        'median squared error of the query (95% CI)': '查询平方误差的中位数（95%置信区间）',
        'linear regression in context: which algorithm does the transformer run?\n(no batch norm; budget {} meta-training steps; test protocol: {} prompts per n)': '上下文中的线性回归：transformer运行的是哪种算法？\n（无批归一化；预算{}个元训练步；测试协议：每个n取{}个提示）',
        'inputs of the prior': '先验的输入范围',
        'exact GP: mean ± 2 sd': '精确GP：均值 ± 2个标准差',
        'PFN: mean ± 2 sd': 'PFN：均值 ± 2个标准差',
        'held-out targets': '留出的目标',
        'context ({} points)': '上下文（{}个点）',
        'in the prior': '先验之内',
        'rougher functions (lengthscale {})': '更粗糙的函数（长度尺度{}）',
        'inputs outside [-1, 1]': '[-1, 1]之外的输入',
        'PFN against the exact GP posterior of its prior (lengthscale {}, inputs in [{}, {}]); budget {} training steps': 'PFN与其先验的精确GP后验对比（长度尺度{}，输入在[{}, {}]内）；预算{}个训练步',
        'Omniglot test characters (in domain)': 'Omniglot测试字符（域内）',
        'printed glyphs (domain shift)': '印刷字形（域偏移）',
        'pretrain +\nnearest centroid\n5,500 steps': '预训练+\n最近质心\n5,500步',
        'pretrain +\nlinear probe\n5,500 steps': '预训练+\n线性探针\n5,500步',
        'MAML\n(quick)\n1,000 meta-steps': 'MAML\n（quick）\n1,000元步',
        'ProtoNet\n(quick)\n1,000 meta-steps': 'ProtoNet\n（quick）\n1,000元步',
        'MAML\n(laptop, 64 filters)\n10,000 meta-steps': 'MAML\n（laptop，64个滤波器）\n10,000元步',
        'query accuracy (%)': '查询准确率（%）',
        'learner and its training budget (the first two: no meta-learning)': '学习器及其训练预算（前两个：没有元学习）',
        '5-way 1-shot, {} fixed test tasks per domain (course protocol: no rotations),\nbatch norm: batch statistics (transductive); mean ± 95% interval': '5类1样本，每个域{}个固定测试任务（课程协议：不旋转），\n批归一化：batch统计量（直推式）；均值 ± 95%置信区间',
        'raw features\n(no learning)': '原始特征\n（不学习）',
        'tf-idf\n(hand-designed)': 'tf-idf\n（人工设计）',
        'meta-learned\nweights': '元学习的\n权重',
        'weights of the cosine nearest centroid': '余弦最近质心的权重',
        'test protocol: {} new 5-way 1-shot tasks': '测试协议：{}个新的5类1样本任务',
        "IDF of the n-gram bucket (tf-idf's weight)": 'n-gram桶的IDF（tf-idf的权重）',
        'meta-learned weight $e^{v}$': '元学习的权重$e^{v}$',
        'the 2,048 buckets (correlation {})': '2,048个桶（相关系数{}）',
        'which module wrote this docstring? budget: {} meta-training steps of 8 tasks; no batch norm': '这段docstring是哪个模块写的？预算：{}个元训练步，每步8个任务；无批归一化',
        # other words of the library's figures
        "accuracy": "准确率",
        "loss": "损失",
        "training seconds": "训练秒数",
        "validation accuracy": "验证准确率",
        "test accuracy": "测试准确率",
    },
}
PLACEHOLDER_FONTS = ("Last Resort",)   # fonts that draw a box (the code point's block) for every character
_installed: dict[str, str] = {}   # the language that figures are translated to, and the font used


def _missing(text: str, path: str) -> str:
    face = FT2Font(path)
    return "".join(dict.fromkeys(c for c in text if not c.isspace() and face.get_char_index(ord(c)) == 0))


def missing_glyphs(text: str, font: str | None = None) -> str:
    """The characters of ``text`` (spaces left out) that the font family ``font`` (default:
    matplotlib's first sans-serif choice) has no glyph for; empty when it can draw them all."""
    family = font or matplotlib.rcParams["font.sans-serif"][0]
    return _missing(text, font_manager.findfont(font_manager.FontProperties(family=[family]),
                                                fallback_to_default=True))


#: fonts drawn for simplified Chinese, best first; after them any sans-serif font with the glyphs, then any other
PREFERRED_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "Source Han Sans CN", "WenQuanYi Micro Hei",
                   "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC", "SimHei", "Heiti SC")


def _rank(name: str) -> tuple[int, str]:
    """Sort key of a font family: the preferred ones in order, then sans-serif, then serif."""
    if name in PREFERRED_FONTS:
        return PREFERRED_FONTS.index(name), name
    return len(PREFERRED_FONTS) + ("Serif" in name or "Mincho" in name or "Song" in name), name


@functools.lru_cache(maxsize=None)
def cjk_font(sample: str = "元学习的内循环与外循环") -> str | None:
    """The family name of an installed font that has every glyph of ``sample``, or None; a simplified
    Chinese sans-serif font first (:data:`PREFERRED_FONTS`). Fonts whose "glyphs" are placeholder boxes
    for every code point (Last Resort) do not count."""
    for entry in sorted(font_manager.fontManager.ttflist, key=lambda e: _rank(e.name)):
        if entry.name.startswith(PLACEHOLDER_FONTS):
            continue
        try:
            if not _missing(sample, entry.fname):
                return entry.name
        except (OSError, RuntimeError):
            continue
    return None


@functools.lru_cache(maxsize=None)
def _pattern(key: str) -> re.Pattern:
    return re.compile("^" + re.escape(key).replace(r"\{\}", "(.+?)") + "$")


def translate(text: str, lang: str) -> str:
    """``text`` in ``lang`` when :data:`LABELS` knows it (exactly, or as a ``{}`` pattern), else ``text``."""
    table = LABELS.get(lang, {})
    if text in table:
        return table[text]
    for key, value in table.items():
        if "{}" in key and (match := _pattern(key).match(text)):
            return value.format(*(translate(part, lang) for part in match.groups()))
    return text


def _translate_formatter(formatter, lang: str) -> int:
    """Translate the words a tick formatter writes at every draw: a ``FixedFormatter``'s list, or the
    ``{location: label}`` dict of the formatter ``set_xticks(ticks, labels)`` makes; how many changed."""
    func = getattr(formatter, "func", None)
    if isinstance(formatter, matplotlib.ticker.FixedFormatter):
        words = dict(enumerate(formatter.seq))
    elif isinstance(func, functools.partial) and func.args and isinstance(func.args[0], dict):
        words = func.args[0]
    else:
        return 0
    changed = 0
    for key, old in words.items():
        new = translate(old, lang) if isinstance(old, str) else old
        changed += new != old
        words[key] = new
    if isinstance(formatter, matplotlib.ticker.FixedFormatter):
        formatter.seq = [words[i] for i in range(len(words))]
    return changed


def translate_figure(fig, lang: str) -> int:
    """Replace every known English text of ``fig`` by its ``lang`` translation; returns how many changed."""
    changed = 0
    for ax in fig.axes:   # tick labels set as words are redrawn from the axis's formatter: translate it there
        for axis in (ax.xaxis, ax.yaxis):
            changed += _translate_formatter(axis.get_major_formatter(), lang)
    for artist in fig.findobj(matplotlib.text.Text):
        old = artist.get_text()
        new = translate(old, lang) if old else old
        if new != old:
            artist.set_text(new)
            changed += 1
    return changed


def install(lang: str) -> bool:
    """Translate every figure's text to ``lang`` from now on, if a font can draw it; True when installed.

    Without such a font it prints one line (what to install) and changes nothing."""
    if lang not in LABELS:
        raise ValueError(f"no figure labels for language {lang!r}; choose one of {', '.join(LABELS)}")
    font = cjk_font()
    if font is None:
        print("figures stay in English: no installed font has Chinese glyphs (install one, e.g. the Debian "
              "package fonts-noto-cjk, then run `python -m mllib.figure_text --refresh` and restart the kernel)")
        return False
    matplotlib.rcParams["font.sans-serif"] = [font, *matplotlib.rcParams["font.sans-serif"]]
    matplotlib.rcParams["axes.unicode_minus"] = False
    if not _installed:
        original = FigureCanvasBase.print_figure

        def print_figure(self, *args, **kwargs):
            translate_figure(self.figure, _installed["lang"])
            return original(self, *args, **kwargs)

        FigureCanvasBase.print_figure = print_figure
    _installed.update(lang=lang, font=font)
    return True


def refresh_fonts() -> str | None:
    """Rebuild matplotlib's font list (it does not notice fonts installed after it was cached) and
    return :func:`cjk_font`'s choice."""
    font_manager.fontManager = font_manager._load_fontmanager(try_read_cache=False)
    cjk_font.cache_clear()
    return cjk_font()


def main(argv=None) -> int:
    """``python -m mllib.figure_text [--refresh]``: which font draws the Chinese figures, one line."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mllib.figure_text", description=main.__doc__)
    parser.add_argument("--refresh", action="store_true", help="rebuild matplotlib's font list first")
    args = parser.parse_args(argv)
    font = refresh_fonts() if args.refresh else cjk_font()
    if font is None:
        print("no installed font has Chinese glyphs: install one (e.g. the Debian package fonts-noto-cjk), "
              "then run `python -m mllib.figure_text --refresh`")
        return 1
    print(f"Chinese figure text is drawn with {font}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["LABELS", "PREFERRED_FONTS", "missing_glyphs", "cjk_font", "refresh_fonts", "translate", "translate_figure", "install"]
